package tests

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
)

// credentialForms are the ways a client may send a token (DESIGN.md):
// each returns the request headers carrying tok.
var credentialForms = []struct {
	name    string
	headers func(tok string) []string
}{
	{"X-API-Key", func(tok string) []string { return []string{"X-API-Key", tok} }},
	{"Bearer", func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }},
	{"bearer", func(tok string) []string { return []string{"Authorization", "bearer " + tok} }},
	{"raw Authorization", func(tok string) []string { return []string{"Authorization", tok} }},
	{"Basic user", func(tok string) []string { return []string{"Authorization", "Basic " + basicUser(tok)} }},
	{"Basic password", func(tok string) []string { return []string{"Authorization", "Basic " + basicPassword(tok)} }},
}

func basicUser(tok string) string     { return base64.StdEncoding.EncodeToString([]byte(tok + ":")) }
func basicPassword(tok string) string { return base64.StdEncoding.EncodeToString([]byte("ci:" + tok)) }

// randomToken returns a well-formed sk- token no store has ever seen.
func randomToken(t *testing.T) string {
	t.Helper()
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := []byte("sk-")
	for range 43 {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, alphabet[n.Int64()])
	}
	return withChecksum(string(b))
}

// TestSecretHygiene runs one gateway with its access logs, debug logging
// and metrics on; sends valid, malformed, unknown, expired, revoked and
// deleted tokens in every credential form to protected, scope-denied,
// public and unmapped routes, a require site and an apikey_admin site;
// runs every admin operation on the admin endpoint and through
// apikey_admin; then scans Caddy's output, the access logs, /metrics, every
// response (admin and gateway; a creating response may show only its own
// new value) and the store's rows: no token shows in any form.
func TestSecretHygiene(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	up := newUpstream(t)
	logDir := t.TempDir()
	requireLog, adminLog := filepath.Join(logDir, "require.log"), filepath.Join(logDir, "admin.log")
	reqPort, adminPort := pgtest.FreePort(t), pgtest.FreePort(t)
	// The access log filter is README's (see startGateway).
	logBlock := func(path string) string {
		return fmt.Sprintf(`log {
		output file %s
		format filter {
			request>headers>X-Api-Key replace REDACTED
		}
	}`, path)
	}
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: schema,
		Site: fmt.Sprintf(towerSite, up.URL),
		Extra: fmt.Sprintf(`
:%d {
	%s
	@runs path /runs/*
	apikey_auth @runs {
		require runs:create runs:read
	}
	respond "ok {http.auth.user.id}"
}

:%d {
	%s
	apikey_admin
}
`, reqPort, logBlock(requireLog), adminPort, logBlock(adminLog)),
	})
	reqURL := fmt.Sprintf("http://127.0.0.1:%d", reqPort)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adminPort)

	h := &hygiene{t: t}
	// send makes a request and keeps its answer for the scan.
	send := func(what, method, url string, body any, headers ...string) response {
		t.Helper()
		r := do(t, method, url, body, headers...)
		h.record(what, r, "")
		return r
	}

	// The tokens sent in traffic.
	acc := gw.createAccount("hygiene", "*")
	createKey := func(name string, scopes []string, extra ...any) (string, string) {
		t.Helper()
		id, secret := gw.createKey(acc, scopes, extra...)
		h.track(name, secret)
		return id, secret
	}
	_, manager := createKey("manager", []string{"accounts", "api_keys", "audit", "apps"})
	_, valid := createKey("valid", []string{"apps:read"})
	_, revoked := createKey("revoked", []string{"apps:read"})
	deletedID, deleted := createKey("deleted", []string{"apps:read"})
	expiresAt := time.Now().Add(1500 * time.Millisecond)
	_, expiring := createKey("expired", []string{"apps:read"}, "expires_at", expiresAt.UTC().Format(time.RFC3339Nano))
	malformed := valid[:len(valid)-1] + "x" // a wrong checksum
	if malformed == valid {
		malformed = valid[:len(valid)-1] + "y"
	}
	h.track("malformed (bad checksum)", malformed)
	wrongPrefix := "pk" + valid[2:]
	h.track("malformed (wrong prefix)", wrongPrefix)
	unknown := randomToken(t)
	h.track("unknown", unknown)

	// Cache the soon-dead tokens first, so that their refusal is also
	// tested from the cache; then expire, revoke and delete them.
	for _, tok := range []string{expiring, revoked, deleted} {
		r := send("warm-up", "GET", gw.URL+"/v1/apps", nil, "X-API-Key", tok)
		if r.Status != 200 && (tok != expiring || time.Now().Before(expiresAt)) {
			t.Fatalf("warm-up with a live token: %d %s", r.Status, r.Body)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the cache apply its writes
	for what, r := range map[string]response{
		"revoke":     gw.adminDo("POST", "/revoke", map[string]any{"token": revoked}),
		"delete key": gw.adminDo("DELETE", "/keys/"+deletedID, nil),
	} {
		h.record(what, r, "")
		if r.Status != http.StatusNoContent {
			t.Fatalf("%s: %d %s", what, r.Status, r.Body)
		}
	}
	time.Sleep(time.Until(expiresAt.Add(100 * time.Millisecond)))

	// Traffic: every token in every form on every kind of route.
	type route struct {
		name, method, url string
		valid             int // status for the valid token
		public            bool
	}
	routes := []route{
		{"protected", "GET", gw.URL + "/v1/apps", 200, false},
		{"scope denied", "POST", gw.URL + "/v1/apps/x/runs", 403, false},
		{"public", "GET", gw.URL + "/healthz", 200, true},
		{"unmapped", "GET", gw.URL + "/v1/unmapped", 403, false},
		{"require site", "GET", reqURL + "/runs/1", 403, false},
		{"admin site", "GET", adminURL + "/whoami", 200, false},
	}
	tokens := []struct{ name, value string }{
		{"valid", valid}, {"malformed", malformed}, {"wrong prefix", wrongPrefix}, {"unknown", unknown},
		{"expired", expiring}, {"revoked", revoked}, {"deleted", deleted},
	}
	for _, rt := range routes {
		for _, tok := range tokens {
			for _, form := range credentialForms {
				what := fmt.Sprintf("%s %s %s with the %s token as %s", rt.name, rt.method, rt.url, tok.name, form.name)
				r := send(what, rt.method, rt.url, nil, form.headers(tok.value)...)
				want := 401
				switch {
				case rt.public:
					want = 200
				case tok.name == "valid":
					want = rt.valid
				}
				if r.Status != want {
					t.Errorf("%s: %d, want %d: %s", what, r.Status, want, r.Body)
				}
			}
		}
	}

	// Every admin operation on both mounts.
	mounts := []struct {
		name string
		call func(i int, method, path string, body any) response
	}{
		{"admin endpoint", func(_ int, method, path string, body any) response {
			return gw.adminDo(method, path, body)
		}},
		{"apikey_admin", func(i int, method, path string, body any) response {
			// The manager's key, in every form in turn.
			return do(t, method, adminURL+path, body, credentialForms[i%len(credentialForms)].headers(manager)...)
		}},
	}
	for _, m := range mounts {
		n := 0
		call := func(method, path string, body any, want int) map[string]any {
			t.Helper()
			n++
			r := m.call(n, method, path, body)
			own := ""
			if want == http.StatusCreated && r.Status == want {
				if s, _ := r.JSON(t)["secret"].(string); s != "" {
					own = s
					h.track(fmt.Sprintf("%s: %s %s", m.name, method, path), s)
				}
			}
			h.record(fmt.Sprintf("%s: %s %s", m.name, method, path), r, own)
			if r.Status != want {
				t.Fatalf("%s: %s %s = %d, want %d: %s", m.name, method, path, r.Status, want, r.Body)
			}
			if len(r.Body) == 0 || !strings.HasPrefix(strings.TrimSpace(string(r.Body)), "{") {
				return nil
			}
			return r.JSON(t)
		}
		use := func(secret string, want int) {
			t.Helper()
			for _, form := range credentialForms[:2] {
				if r := send(m.name+" key in use", "GET", gw.URL+"/v1/apps", nil, form.headers(secret)...); r.Status != want {
					t.Errorf("%s: a token in use: %d, want %d: %s", m.name, r.Status, want, r.Body)
				}
			}
		}
		tokenID := func(v map[string]any) string { return v["id"].(string) }

		account := call("POST", "/accounts", map[string]any{"name": "ops " + m.name, "kind": "service", "scopes": []string{"apps"}}, 201)
		accID := account["id"].(string)
		call("GET", "/accounts", nil, 200)
		call("GET", "/accounts/"+accID, nil, 200)
		call("PATCH", "/accounts/"+accID, map[string]any{"team": "blue"}, 200)

		key := call("POST", "/keys", map[string]any{"account": accID, "name": "ops", "scopes": []string{"apps:read"}, "tags": map[string]string{"env": "test"}}, 201)
		keyID, s1 := key["id"].(string), key["secret"].(string)
		use(s1, 200)
		call("GET", "/keys", nil, 200)
		call("GET", "/keys?account="+accID, nil, 200)
		call("GET", "/keys?tag=env:test", nil, 200)
		got := call("GET", "/keys/"+keyID, nil, 200)
		tid1 := tokenID(got["tokens"].([]any)[0].(map[string]any))
		call("PATCH", "/keys/"+keyID, map[string]any{"description": "operations"}, 200)

		second := call("POST", "/keys/"+keyID+"/tokens", map[string]any{"name": "second"}, 201)
		tid2, s2 := tokenID(second), second["secret"].(string)
		use(s2, 200)
		call("PATCH", "/keys/"+keyID+"/tokens/"+tid2, map[string]any{"description": "the second"}, 200)

		rotated := call("POST", "/keys/"+keyID+"/tokens/"+tid1+"/rotate", map[string]any{"grace": "1h"}, 201)
		tid3, s3 := tokenID(rotated), rotated["secret"].(string)
		use(s1, 200) // in its grace period
		use(s3, 200)
		rotatedNow := call("POST", "/keys/"+keyID+"/tokens/"+tid2+"/rotate", map[string]any{}, 201)
		s4 := rotatedNow["secret"].(string)
		use(s2, 401)
		use(s4, 200)
		call("GET", "/keys/"+keyID, nil, 200)
		call("DELETE", "/keys/"+keyID+"/tokens/"+tid3, nil, 204)
		use(s3, 401)
		call("POST", "/revoke", map[string]any{"token": s4}, 204)
		use(s4, 401)

		// Error answers to requests carrying token values must not echo them.
		call("POST", "/revoke", map[string]any{"token": s4}, 404)
		call("POST", "/revoke", map[string]any{"token": s1[:len(s1)-1]}, 400)
		call("POST", "/revoke", []byte(`{"token": `+s1+`}`), 400)
		call("POST", "/revoke", []byte(`{"token": "`+s1), 400)
		call("PATCH", "/keys/"+keyID, map[string]any{"secret": s1}, 400)
		call("PATCH", "/keys/"+keyID+"/tokens/"+tid1, map[string]any{"token": s1}, 400)
		call("POST", "/keys", map[string]any{"account": accID, "name": "x", "secret": s1}, 400)

		call("GET", "/whoami", nil, 200)
		call("GET", "/audit", nil, 200)
		call("GET", "/openapi.json", nil, 200)
		call("DELETE", "/keys/"+keyID, nil, 204)
		use(s1, 401)
		call("DELETE", "/accounts/"+accID, nil, 204)
	}

	// Every token ever seen, once more, now that most are dead.
	for _, tr := range h.tokens {
		for _, form := range credentialForms {
			send("final round", "GET", gw.URL+"/v1/apps", nil, form.headers(tr.value)...)
		}
	}

	// Collect what was written.
	metrics := do(t, "GET", gw.AdminURL+"/metrics", nil)
	if metrics.Status != 200 || !strings.Contains(string(metrics.Body), "caddy_apikeys_decisions_total") {
		t.Fatalf("GET /metrics: %d, without Keygate's metrics:\n%.2000s", metrics.Status, metrics.Body)
	}
	time.Sleep(200 * time.Millisecond) // let the last log lines land
	sources := map[string]string{
		"caddy output (debug)": gw.Output(),
		"/metrics":             string(metrics.Body),
	}
	for name, path := range map[string]string{"access log": gw.AccessLog, "require site access log": requireLog, "admin site access log": adminLog} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(raw) == 0 {
			t.Fatalf("%s is empty", name)
		}
		sources[name] = string(raw)
	}
	// The scan is only worth something if the logs were really on.
	if !strings.Contains(gw.Output(), `"level":"debug"`) {
		t.Fatalf("no debug line in Caddy's output:\n%.3000s", gw.Output())
	}
	if !strings.Contains(sources["access log"], `"user_id":"`+acc+`"`) {
		t.Errorf("the access log never names the account as user_id")
	}

	sc := h.scanner()
	sc.selfTest(t)
	leaks := 0
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	sort.Strings(names)
	total := 0
	for _, name := range names {
		total += len(sources[name])
		leaks += sc.report(t, name, sources[name], "", true)
	}
	for _, r := range h.responses {
		total += len(r.text)
		leaks += sc.report(t, r.what, r.text, r.own, true)
	}
	// The store keeps hashes by design; no value, though.
	for table, text := range dumpSchema(t, dsn, schema) {
		total += len(text)
		leaks += sc.report(t, "store table "+table, text, "", false)
	}
	t.Logf("scanned %d bytes (%d responses, %d log and metric sources, the store) for %d tokens: %d leaks",
		total, len(h.responses), len(sources), len(h.tokens), leaks)
}

// hygiene collects the tokens of a test and what the gateway answered.
type hygiene struct {
	t         *testing.T
	tokens    []trackedToken
	responses []recordedResponse
}

type trackedToken struct{ name, value string }

type recordedResponse struct {
	what string
	text string // status, headers and body
	own  string // the token value this response created, which it may show
}

func (h *hygiene) track(name, value string) {
	h.tokens = append(h.tokens, trackedToken{name, value})
}

func (h *hygiene) record(what string, r response, own string) {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", r.Status)
	_ = r.Header.Write(&b)
	b.Write(r.Body)
	h.responses = append(h.responses, recordedResponse{what: what, text: b.String(), own: own})
}

// leakScanner finds any form of a token in text: the value itself or any
// 12 characters of its hint-less middle (so also the middle whole, the
// value without prefix and a Basic credential decoded); the hex of its
// SHA-256 or of any 8 bytes of it (so the full hex and the first 16
// bytes, upper or lower case); the base64 (std or URL, padded or not) of
// its SHA-256 or of any prefix of 12 bytes or more; and the base64 of the
// Basic credentials carrying it.
type leakScanner struct {
	value  map[string]leakForm // 12-character windows of hint-less middles
	hashes map[string]leakForm // 16-character windows: hex (lower case) and base64 of hashes, base64 of Basic credentials
	tokens []trackedToken
}

type leakForm struct {
	token trackedToken
	form  string
	hash  bool // a hash form: the store may hold these
	hex   bool // matched in either case
}

const (
	valueWindow = 12
	hashWindow  = 16
)

func (h *hygiene) scanner() *leakScanner {
	sc := &leakScanner{value: map[string]leakForm{}, hashes: map[string]leakForm{}, tokens: h.tokens}
	// A window shared by several tokens (a malformed copy of the valid
	// one) is reported under the first.
	put := func(m map[string]leakForm, k string, f leakForm) {
		if _, ok := m[k]; !ok {
			m[k] = f
		}
	}
	for _, tok := range h.tokens {
		v := tok.value
		middle := v[6 : len(v)-4]
		for i := 0; i+valueWindow <= len(middle); i++ {
			put(sc.value, middle[i:i+valueWindow], leakForm{tok, "value (hint-less middle)", false, false})
		}
		sum := sha256.Sum256([]byte(v))
		windows := func(s, form string, from int, hash bool) {
			for i := from; i+hashWindow <= len(s); i++ {
				put(sc.hashes, s[i:i+hashWindow], leakForm{tok, form, hash, false})
			}
		}
		hexSum := hex.EncodeToString(sum[:])
		for i := 0; i+hashWindow <= len(hexSum); i += 2 { // whole bytes only
			put(sc.hashes, hexSum[i:i+hashWindow], leakForm{tok, "hex of SHA-256", true, true})
		}
		windows(base64.StdEncoding.EncodeToString(sum[:]), "base64 of SHA-256", 0, true)
		windows(base64.URLEncoding.EncodeToString(sum[:]), "base64url of SHA-256", 0, true)
		// Skip the characters that encode "sk-" or "ci:sk-" only.
		windows(basicUser(v), "base64 Basic credentials", 8, false)
		windows(basicPassword(v), "base64 Basic credentials", 8, false)
	}
	return sc
}

type leak struct {
	at   int
	form leakForm
}

// scan returns where text shows a token, except the value own (a creating
// response shows its new value); hashes too unless withHashes is false.
func (sc *leakScanner) scan(text, own string, withHashes bool) []leak {
	var out []leak
	seen := map[string]bool{}
	add := func(at int, f leakForm) {
		if f.token.value == own && !f.hash {
			return
		}
		k := f.token.value + f.form
		if !seen[k] {
			seen[k] = true
			out = append(out, leak{at, f})
		}
	}
	for i := 0; i+valueWindow <= len(text); i++ {
		if f, ok := sc.value[text[i:i+valueWindow]]; ok {
			add(i, f)
		}
	}
	lower := strings.ToLower(text) // hex in either case
	for i := 0; i+hashWindow <= len(text); i++ {
		if f, ok := sc.hashes[text[i:i+hashWindow]]; ok && (withHashes || !f.hash) {
			add(i, f)
		} else if f, ok := sc.hashes[lower[i:i+hashWindow]]; ok && withHashes && f.hex {
			add(i, f)
		}
	}
	return out
}

// report fails t for every token form text shows, and returns how many.
func (sc *leakScanner) report(t *testing.T, what, text, own string, withHashes bool) int {
	t.Helper()
	leaks := sc.scan(text, own, withHashes)
	for _, l := range leaks {
		from, to := max(0, l.at-200), min(len(text), l.at+200)
		t.Errorf("LEAK in %s: the %s of the %s token shows at offset %d:\n…%s…", what, l.form.form, l.form.token.name, l.at, text[from:to])
	}
	return len(leaks)
}

// selfTest checks that the scanner sees every form it claims to.
func (sc *leakScanner) selfTest(t *testing.T) {
	t.Helper()
	tok := sc.tokens[0].value
	sum := sha256.Sum256([]byte(tok))
	for form, text := range map[string]string{
		"value":                 tok,
		"middle":                tok[6 : len(tok)-4],
		"piece of the middle":   tok[10:22],
		"hex of SHA-256":        hex.EncodeToString(sum[:]),
		"hex of 16 bytes":       hex.EncodeToString(sum[:16]),
		"HEX of 16 bytes":       strings.ToUpper(hex.EncodeToString(sum[:16])),
		"hex of 8 middle bytes": hex.EncodeToString(sum[8:16]),
		"base64 of SHA-256":     base64.StdEncoding.EncodeToString(sum[:]),
		"raw base64url":         base64.RawURLEncoding.EncodeToString(sum[:]),
		"base64 of 12 bytes":    base64.StdEncoding.EncodeToString(sum[:12]),
		"Basic user":            basicUser(tok),
		"Basic password":        basicPassword(tok),
	} {
		if len(sc.scan(`{"msg":"x `+text+`"}`, "", true)) == 0 {
			t.Fatalf("scanner self-test: the %s of a token is not found", form)
		}
	}
	if l := sc.scan(`{"hint":"`+tok[:6]+"…"+tok[len(tok)-4:]+`"}`, "", true); len(l) != 0 {
		t.Fatalf("scanner self-test: a hint counts as a leak: %v", l)
	}
}

// dumpSchema returns the rows of every table of schema, as JSON text.
func dumpSchema(t *testing.T, dsn, schema string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) == 0 {
		t.Fatalf("schema %s has no tables", schema)
	}
	out := map[string]string{}
	for _, table := range tables {
		var text string
		q := "SELECT coalesce(string_agg(to_jsonb(x)::text, E'\\n'), '') FROM " + pgx.Identifier{schema, table}.Sanitize() + " x"
		if err := conn.QueryRow(ctx, q).Scan(&text); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out[table] = text
	}
	return out
}
