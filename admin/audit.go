package admin

import (
	_ "embed"
	"net/http"
	"time"

	"github.com/keygate/keygate/storage"
)

// AuditEvent is the JSON form of an audit event.
type AuditEvent struct {
	ID      string         `json:"id"`
	At      time.Time      `json:"at"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Target  string         `json:"target"`
	Details map[string]any `json:"details"`
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request, p Principal) error {
	opts, err := listOptions(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := storage.AuditFilter{ListOptions: opts, Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target")}
	events, next, err := h.ks.Audit(r.Context(), p, f)
	if err != nil {
		return err
	}
	out := List[AuditEvent]{Items: make([]AuditEvent, len(events)), Next: next}
	for i, e := range events {
		out.Items[i] = AuditEvent{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Details: e.Details}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// Whoami describes the caller.
type Whoami struct {
	Account *Account `json:"account"`
	Key     *Key     `json:"key"`
	Token   *Token   `json:"token"`
	Scopes  []string `json:"scopes"`
}

func (h *Handler) whoami(w http.ResponseWriter, r *http.Request, p Principal) error {
	out := Whoami{Scopes: nonNil(p.Scopes)}
	if p.Trusted {
		// The admin endpoint has no key: it acts with every scope.
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	a, err := h.ks.Account(r.Context(), p, p.AccountID)
	if err != nil {
		return err
	}
	k, err := h.ks.Key(r.Context(), p, p.Actor)
	if err != nil {
		return err
	}
	now := time.Now()
	account, key := accountJSON(a), keyJSON(k, now)
	out.Account, out.Key = &account, &key
	for i := range key.Tokens {
		if key.Tokens[i].ID == p.TokenID {
			out.Token = &key.Tokens[i]
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

//go:embed openapi.json
var openAPIDocument []byte

// serveOpenAPI serves the OpenAPI 3.1 description of the API.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDocument)
}
