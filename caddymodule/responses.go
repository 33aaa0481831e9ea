package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/storage"
)

// denial is one refusal, rendered once when the handler is provisioned so
// that answering a flood of bad requests costs no encoding.
type denial struct {
	result          prometheus.Counter // counts this decision
	status          int
	body            []byte
	wwwAuthenticate []string
	retryAfter      []string
	// extra holds the headers of a refusal rendered per request (the
	// RateLimit fields of a 429), nil for the fixed ones.
	extra http.Header
	err   error
}

var jsonContentType = []string{"application/json"}

// newDenial renders the answer {"error": code, "message": message, ...extra}.
// challenge is the WWW-Authenticate value, or "" for none.
func newDenial(result prometheus.Counter, status int, code, message, challenge string, extra map[string]string) *denial {
	fields := map[string]string{"error": code, "message": message}
	for k, v := range extra {
		fields[k] = v
	}
	body, _ := json.Marshal(fields) // a map of strings always encodes
	d := &denial{result: result, status: status, body: append(body, '\n'), err: errors.New(code + ": " + message)}
	if challenge != "" {
		d.wwwAuthenticate = []string{challenge}
	}
	if status == http.StatusServiceUnavailable {
		d.retryAfter = []string{storage.UnavailableRetryAfter}
	}
	return d
}

// challenge returns a Bearer WWW-Authenticate value (RFC 6750) for realm
// with the given auth-params, quoted.
func challenge(realm string, params ...string) string {
	var b strings.Builder
	b.WriteString(`Bearer realm=`)
	b.WriteString(strconv.Quote(realm))
	for i := 0; i+1 < len(params); i += 2 {
		b.WriteString(", ")
		b.WriteString(params[i])
		b.WriteString("=")
		b.WriteString(strconv.Quote(params[i+1]))
	}
	return b.String()
}

// serve answers the denial. When the server has handle_errors routes, it
// returns a caddyhttp.Error instead, so those routes can render it;
// the challenge headers are set either way.
func (d *denial) serve(w http.ResponseWriter, r *http.Request) error {
	d.result.Inc()
	d.setHeaders(w.Header())
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok &&
		srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(d.status, d.err)
	}
	d.write(w)
	return nil
}

// answer answers the denial as it is, whatever handle_errors routes the
// server has: for a proxy that reads it (apikey_verify).
func (d *denial) answer(w http.ResponseWriter) {
	d.result.Inc()
	d.setHeaders(w.Header())
	d.write(w)
}

// setHeaders sets the denial's challenge, Retry-After and extra headers.
func (d *denial) setHeaders(h http.Header) {
	for name, vals := range d.extra {
		h[name] = vals
	}
	if d.wwwAuthenticate != nil {
		h["Www-Authenticate"] = d.wwwAuthenticate
	}
	if d.retryAfter != nil {
		h["Retry-After"] = d.retryAfter
	}
}

// write writes the status and the JSON body.
func (d *denial) write(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(d.status)
	_, _ = w.Write(d.body) // a client gone away is not the handler's error
}

var noStore = []string{"no-store"}
