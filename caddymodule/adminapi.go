package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/admin"
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
type AdminAPI struct {
	ctx caddy.Context
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.apikeys",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision keeps the context: the admin endpoint is provisioned for every
// config load, also those without the apikeys app, so the app is looked up
// when a request comes.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	return nil
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
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		w.WriteHeader(http.StatusServiceUnavailable)
		return json.NewEncoder(w).Encode(map[string]string{"error": "unavailable", "message": err.Error()})
	}
	r2 := r.Clone(admin.WithPrincipal(r.Context(), admin.Trusted))
	r2.URL.Path = strings.TrimPrefix(r.URL.Path, AdminAPIPrefix)
	r2.URL.RawPath = ""
	// Export and import move token hashes: only on this trusted endpoint.
	switch {
	case r2.Method == http.MethodGet && r2.URL.Path == "/export":
		h.ServeExport(w, r2)
	case r2.Method == http.MethodPost && r2.URL.Path == "/import":
		h.ServeImport(w, r2)
	default:
		h.ServeHTTP(w, r2)
	}
	return nil
}

// apiHandler returns the admin API of the running apikeys app.
func (a *AdminAPI) apiHandler() (*admin.Handler, error) {
	appModule, err := a.ctx.AppIfConfigured("apikeys")
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
	_ caddy.Provisioner = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
