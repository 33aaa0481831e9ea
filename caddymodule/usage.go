package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/limiter"
	"github.com/keygate/keygate/storage"
)

// Usage policies on the request path: a key's and its account's IP
// allowlists, rate windows and credits (storage.Policy), decided after the
// key and its scope are known. A request whose key has no policy pays one
// branch (verified.limited); the rest is here.

// Values of UsageSettings.ChargeOn.
const (
	ChargeAny = "any"
	Charge2xx = "2xx"
)

// UsageSettings say how a handler charges credits and shows rate limits.
type UsageSettings struct {
	// CostHeader names a response header in which the upstream states
	// what the request cost (a non-negative integer); the header is
	// removed before the client sees it. Without it, or when the upstream
	// does not send it, a request costs its route's cost (default 1).
	CostHeader string `json:"cost_header,omitempty"`
	// ChargeOn is "any" (the default: every request that passed is
	// charged) or "2xx" (only those the upstream answered with a 2xx;
	// the others get their credits back).
	ChargeOn string `json:"charge_on,omitempty"`
	// RateLimitHeaders, when false, keeps the RateLimit and
	// RateLimit-Policy fields off passing responses (429s always carry
	// them). Default: true.
	RateLimitHeaders *bool `json:"rate_limit_headers,omitempty"`

	costHeader string // canonical
	headers    bool
}

// compileUsage checks the settings.
func (u *UsageSettings) compileUsage() error {
	switch u.ChargeOn {
	case "", ChargeAny, Charge2xx:
	default:
		return &settingError{setting: "charge_on", err: fmt.Errorf("charge_on %q: want any or 2xx", u.ChargeOn)}
	}
	u.costHeader = ""
	if u.CostHeader != "" {
		if strings.ContainsAny(u.CostHeader, " \t\r\n:") {
			return &settingError{setting: "cost_header", err: fmt.Errorf("cost_header %q: not a header name", u.CostHeader)}
		}
		u.costHeader = http.CanonicalHeaderKey(u.CostHeader)
	}
	u.headers = u.RateLimitHeaders == nil || *u.RateLimitHeaders
	return nil
}

// limitedPolicy reports whether a usage policy applies to the credential.
func limitedPolicy(c *storage.Credential) bool {
	return !c.KeyPolicy.IsZero() || !c.AccountPolicy.IsZero()
}

// ipNotAllowed answers a key used from outside its allowlists.
var ipNotAllowed = newDenial(resultIPNotAllowed, http.StatusForbidden, "ip_not_allowed",
	"the API key may not be used from this address", "", nil)

// clientAddr returns the address of the client a request comes from, as a
// handler knows it, or the refusal for a key with an allowlist when the
// handler does not know it.
type clientAddr func(r *http.Request) (netip.Addr, *denial)

// caddyClientIP is apikey_auth's clientAddr: Caddy's client_ip, so
// trusted_proxies and client_ip_headers apply.
func caddyClientIP(r *http.Request) (netip.Addr, *denial) {
	if r.TLS != nil && !r.TLS.HandshakeComplete {
		return netip.Addr{}, ipNotAllowed // 0-RTT: the address is not verified yet
	}
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, ipNotAllowed
	}
	return addr, nil
}

// checkUsage applies cred's usage policy to a request its key and scope
// let through, for apikey_auth and apikey_verify alike: the key's and its
// account's allowlists against the client's address (addr, asked only of
// a key with an allowlist), then the rate windows and a reservation of
// cost from the credits, decided by the limiter into d. It returns nil
// when the request may pass (d then holds the windows and the
// reservation, which the caller settles), or the refusal.
func checkUsage(r *http.Request, d *limiter.Decision, a *Authenticator, cred *verified, cost int64, addr clientAddr) *denial {
	c := &cred.Credential
	if len(c.KeyPolicy.AllowedIPs) > 0 || len(c.AccountPolicy.AllowedIPs) > 0 {
		ip, unknown := addr(r)
		if unknown != nil {
			return unknown
		}
		if !c.KeyPolicy.Allows(ip) || !c.AccountPolicy.Allows(ip) {
			return ipNotAllowed
		}
	}
	lim := a.app.limiter()
	if lim == nil {
		return a.answers.unavailable
	}
	q := limiter.Query{
		KeyID: cred.KeyID, KeyLimits: c.KeyPolicy.Limits,
		AccountID: cred.AccountID, AccountLimits: c.AccountPolicy.Limits,
		Credits: c.KeyPolicy.Credits != nil, Cost: cost,
	}
	*d = lim.Allow(r.Context(), &q)
	switch d.Reason {
	case limiter.ReasonRateLimited:
		return rateLimited(d, cred.ratePolicy)
	case limiter.ReasonCredits:
		return creditsSpent(d)
	case limiter.ReasonUnavailable:
		return a.answers.unavailable
	}
	return nil
}

// admitLimited lets a request whose usage policy passed (checkUsage) go
// on: the RateLimit fields on w's headers (unless rate_limit_headers is
// off), the identity and usage placeholders.
func (u *UsageSettings) admitLimited(w http.ResponseWriter, r *http.Request, cred *verified, d *limiter.Decision) {
	lr := new(limitedRequest) // the one allocation of a passing request but its RateLimit value
	if u.headers {
		lr.setRateLimitHeaders(w.Header(), d, cred.ratePolicy)
	}
	admit(r, cred)
	lr.setUsagePlaceholders(r, d)
}

// serveLimited serves a request whose key has a usage policy: the
// allowlists, then the rate windows and credits (checkUsage), then next,
// settling the credits reserved once the upstream has answered.
func (u *UsageSettings) serveLimited(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	a *Authenticator, cred *verified, cost int64) error {
	var d limiter.Decision
	if refused := checkUsage(r, &d, a, cred, cost, caddyClientIP); refused != nil {
		return refused.serve(w, r)
	}
	u.admitLimited(w, r, cred, &d)
	res := d.Reservation
	if res.Amount() == 0 {
		return next.ServeHTTP(w, r)
	}
	if u.ChargeOn != Charge2xx && u.costHeader == "" {
		res.Commit(cost) // charged whatever the upstream answers
		return next.ServeHTTP(w, r)
	}
	sw := &settleWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		res: res, cost: cost, costHeader: u.costHeader, only2xx: u.ChargeOn == Charge2xx, logger: a.logger}
	err := next.ServeHTTP(sw, r)
	sw.settleAfter(err)
	return err
}

// setRateLimitHeaders sets the RateLimit-Policy and RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers) of d's windows, if any. policy is
// the credential's RateLimit-Policy value, formatted once (ratePolicy);
// both fields share one array.
func (lr *limitedRequest) setRateLimitHeaders(h http.Header, d *limiter.Decision, policy string) {
	if len(d.Windows()) == 0 {
		return
	}
	var buf [128]byte
	lr.fields = [2]string{policy, string(limiter.AppendRateLimit(buf[:0], d))}
	h["Ratelimit-Policy"] = lr.fields[0:1:1]
	h["Ratelimit"] = lr.fields[1:2:2]
}

// limitedRequest is what a passing request with a usage policy keeps:
// its RateLimit fields and its usage placeholders, in one allocation.
type limitedRequest struct {
	fields [2]string
	vars   usageVars
}

// ratePolicy is the RateLimit-Policy value of a credential's windows.
func ratePolicy(c *storage.Credential) string {
	return string(limiter.AppendPolicyOf(nil, c.KeyPolicy.Limits, c.AccountPolicy.Limits))
}

// usageVars are the {apikey.credits_remaining} and
// {apikey.ratelimit_remaining} placeholders of a request with a usage
// policy, formatted only if something reads them.
type usageVars struct {
	credits, rate       int64
	hasCredits, hasRate bool
}

func (v *usageVars) lookup(key string) (any, bool) {
	switch key {
	case "apikey.credits_remaining":
		if v.hasCredits {
			return v.credits, true
		}
		return "", true
	case "apikey.ratelimit_remaining":
		if v.hasRate {
			return v.rate, true
		}
		return "", true
	}
	return nil, false
}

// setUsagePlaceholders sets {apikey.credits_remaining} (empty when the
// key's credits are unlimited) and {apikey.ratelimit_remaining} (the
// least room of the windows, empty when none applies). It must follow
// admit, whose placeholders answer these two with "" for keys without a
// policy: the replacer asks its providers in order.
func (lr *limitedRequest) setUsagePlaceholders(r *http.Request, d *limiter.Decision) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	v := &lr.vars
	*v = usageVars{credits: d.CreditsRemaining, hasCredits: d.Credits}
	if ws := d.Windows(); len(ws) > 0 {
		v.rate, v.hasRate = ws[0].Remaining, true
		for _, w := range ws[1:] {
			v.rate = min(v.rate, w.Remaining)
		}
	}
	repl.Map(v.lookup)
}

// rateLimited renders the 429 rate_limited of d, naming the window that
// is full as the RateLimit fields name it.
func rateLimited(d *limiter.Decision, policy string) *denial {
	name := d.Window
	if d.WindowAccount {
		name = limiter.AccountPrefix + name
	}
	// Window names are [a-z0-9_-] (storage.checkPolicy): nothing to escape.
	body := []byte(`{"error":"rate_limited","message":"the rate limit ` + name + ` is reached; retry later","limit":"` + name + `"}` + "\n")
	l := limitDenial(resultRateLimited, d, body, "rate_limited: "+name)
	l.extra = http.Header{}
	new(limitedRequest).setRateLimitHeaders(l.extra, d, policy)
	return l
}

// creditsSpent renders the 429 usage_exceeded of d: 429 rather than 402,
// which RFC 9110 reserves, so that clients and SDKs treat it as the limit
// it is and honour Retry-After (the next refill, when one is due).
func creditsSpent(d *limiter.Decision) *denial {
	body := []byte(`{"error":"usage_exceeded","message":"the API key's credits are spent","credits_remaining":0}` + "\n")
	return limitDenial(resultUsageExceeded, d, body, "usage_exceeded")
}

// limitDenial renders a 429 whose body and Retry-After depend on the
// limiter's decision, answered as the fixed denials are.
func limitDenial(result prometheus.Counter, d *limiter.Decision, body []byte, msg string) *denial {
	l := &denial{result: result, status: http.StatusTooManyRequests, body: body, err: errors.New(msg)}
	if ra := limiter.AppendRetryAfter(nil, d); len(ra) > 0 {
		l.retryAfter = []string{string(ra)}
	}
	return l
}

// settleWriter settles a request's credit reservation when the upstream's
// answer starts: with the cost the upstream states in the cost header
// (removed from the answer), and only for a 2xx under charge_on 2xx.
type settleWriter struct {
	*caddyhttp.ResponseWriterWrapper
	res        limiter.Reservation
	cost       int64
	costHeader string
	only2xx    bool
	settled    bool
	logger     *zap.Logger
}

// WriteHeader settles, then writes the status.
func (sw *settleWriter) WriteHeader(status int) {
	if status >= 200 || status == http.StatusSwitchingProtocols {
		sw.settle(status)
	}
	sw.ResponseWriter.WriteHeader(status)
}

// Write settles as a 200 when no status was written.
func (sw *settleWriter) Write(p []byte) (int, error) {
	if !sw.settled {
		sw.WriteHeader(http.StatusOK)
	}
	return sw.ResponseWriter.Write(p)
}

func (sw *settleWriter) settle(status int) {
	if sw.settled {
		return
	}
	sw.settled = true
	cost := sw.cost
	if sw.costHeader != "" {
		h := sw.Header()
		if v := h.Get(sw.costHeader); v != "" {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n >= 0 {
				cost = n
			} else {
				sw.logger.Warn("the upstream's cost header is not a non-negative integer; charging the route's cost",
					zap.String("header", sw.costHeader))
			}
		}
		delete(h, sw.costHeader)
	}
	if sw.only2xx && (status < 200 || status > 299) {
		sw.res.Cancel()
		return
	}
	sw.res.Commit(cost)
}

// settleAfter settles a request whose handler chain wrote no answer: it
// failed (an upstream error becomes a 502 later), or wrote nothing.
func (sw *settleWriter) settleAfter(err error) {
	if sw.settled {
		return
	}
	status := http.StatusOK
	if err != nil {
		status = http.StatusBadGateway
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			status = he.StatusCode
		}
	}
	sw.settle(status)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (sw *settleWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

// storeUsage tells the admin API how full windows are: the totals the
// store holds across nodes (each node's counts reach it once per sync
// interval, so this lags by at most that much).
type storeUsage struct{ ks *storage.Keystore }

// WindowUsage implements admin.UsageReporter with the sliding-window
// estimate the limiter decides with.
func (s storeUsage) WindowUsage(ctx context.Context, subject string, windows []storage.Window) []admin.WindowUse {
	now := time.Now()
	deltas := make([]storage.WindowDelta, len(windows))
	for i, w := range windows {
		deltas[i] = storage.WindowDelta{Subject: subject, Name: w.Name, Start: w.StartAt(now), Length: w.Length}
	}
	out := make([]admin.WindowUse, len(windows))
	counts, err := s.ks.SyncWindows(ctx, deltas)
	for i, w := range windows {
		start := deltas[i].Start
		out[i].ResetsAt = start.Add(w.Length)
		if err != nil || i >= len(counts) {
			continue
		}
		elapsed := float64(now.Sub(start)) / float64(w.Length)
		out[i].Used = counts[i].Count + int64(float64(counts[i].Previous)*(1-elapsed))
	}
	return out
}

// Interface guards
var (
	_ http.ResponseWriter = (*settleWriter)(nil)
	_ admin.UsageReporter = storeUsage{}
)
