package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPIPrefix is where the key-management API lives on Caddy's admin
// endpoint.
const AdminAPIPrefix = "/apikeys"

// AdminAPI serves the key-management API on Caddy's admin endpoint under
// /apikeys/. The admin endpoint is trusted, so its callers act with every
// scope; audit events name them "admin".
//
// It serves the store of the running config, whichever config provisioned
// it: Caddy replaces the admin endpoint's routes before the new config's
// apps start and keeps them when that config then fails, so the config
// this module belongs to may be one that never ran.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.apikeys",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: AdminAPIPrefix + "/",
		Handler: caddy.AdminHandlerFunc(a.serve),
	}}
}

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	h, err := a.apiHandler()
	if err != nil {
		// Answered like the API's own errors, not as a Caddy APIError.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", storage.UnavailableRetryAfter)
		w.WriteHeader(http.StatusServiceUnavailable)
		return json.NewEncoder(w).Encode(map[string]string{"error": "unavailable", "message": err.Error()})
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = strings.TrimPrefix(r.URL.Path, AdminAPIPrefix)
	r2.URL.RawPath = ""
	h.ServeTrusted(w, r2)
	return nil
}

// apiHandler returns the admin API of the running config's apikeys app.
func (a *AdminAPI) apiHandler() (*admin.Handler, error) {
	running := caddy.ActiveContext()
	if running.Context == nil {
		return nil, errors.New("no config is running yet")
	}
	appModule, err := running.AppIfConfigured("apikeys")
	if err != nil {
		return nil, errors.New("keygate is not configured: add the apikeys global option or an apikey_auth handler")
	}
	api := appModule.(*App).api()
	if api == nil {
		return nil, errors.New("the key store is not open yet")
	}
	return api, nil
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
