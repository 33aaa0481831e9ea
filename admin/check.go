package admin

import (
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
)

// Check is the answer of GET /check on Caddy's admin endpoint ("caddy
// apikey check"): the store of the running config, whether it answers and
// how fast, its schema version, the change listener, its record counts.
// It answers 200 when the store answers and 503 (with Error "unavailable",
// Message and Retry-After, beside the fields known without the store)
// when it does not.
type Check struct {
	// Error and Message are set when the store does not answer.
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
	// Store names the backend: "file", "postgres", or a third-party
	// backend's Go type; Location says where it is, without secrets.
	Store    string `json:"store"`
	Location string `json:"location,omitempty"`
	// Reachable says whether the store answered; Latency (a Go duration)
	// is the round trip it took.
	Reachable bool   `json:"reachable"`
	Latency   string `json:"latency,omitempty"`
	// SchemaVersion is the store's schema (PostgreSQL) or record format
	// (file) version, LatestSchemaVersion the newest this build knows.
	SchemaVersion       int `json:"schema_version,omitempty"`
	LatestSchemaVersion int `json:"latest_schema_version,omitempty"`
	// Listener is the change listener of a store shared by several
	// gateways (PostgreSQL); absent for the file store, which has none.
	Listener *ListenerStatus `json:"listener,omitempty"`
	// Counts are the records the store holds, when it can count them.
	Counts *Counts `json:"counts,omitempty"`
}

// ListenerStatus is the state of the change listener: connected, and
// since when (the last connection or loss; absent before the first).
type ListenerStatus struct {
	Connected bool       `json:"connected"`
	Since     *time.Time `json:"since,omitempty"`
}

// Counts counts a store's records by type.
type Counts struct {
	Accounts int64 `json:"accounts"`
	Keys     int64 `json:"keys"`
	Tokens   int64 `json:"tokens"`
}

// ReportListener has GET /check report the state of the store's change
// listener as fn returns it (nil: the store has none, as the file store).
// Call it before the handler serves.
func (h *Handler) ReportListener(fn func() *ListenerStatus) { h.listener = fn }

// serveCheck answers GET /check: the store's health (see Check). It is
// for Caddy's admin endpoint only: it says where the store is and what it
// holds.
func (h *Handler) serveCheck(w http.ResponseWriter, r *http.Request) {
	var listener *ListenerStatus
	if h.listener != nil {
		listener = h.listener()
	}
	health, err := h.ks.Health(r.Context())
	out := Check{Store: health.Kind, Location: health.Location, Reachable: err == nil,
		SchemaVersion: health.SchemaVersion, LatestSchemaVersion: health.LatestSchemaVersion, Listener: listener}
	if err != nil {
		h.logger.Warn("key store check failed", zap.Error(err))
		out.Error, out.Message = "unavailable", err.Error()
		w.Header().Set("Retry-After", storage.UnavailableRetryAfter)
		writeJSON(w, http.StatusServiceUnavailable, out)
		return
	}
	out.Latency = health.Latency.Round(100 * time.Nanosecond).String()
	if c := health.Counts; c != nil {
		out.Counts = &Counts{Accounts: c.Accounts, Keys: c.Keys, Tokens: c.Tokens}
	}
	writeJSON(w, http.StatusOK, out)
}
