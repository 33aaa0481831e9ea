package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

func memoryStore(t *testing.T) (*storage.Keystore, *storage.Account) {
	t.Helper()
	ks := storage.New(storagetest.NewMemory())
	acc, err := ks.CreateAccount(context.Background(), storage.Trusted, storage.NewAccount{Name: "team", Kind: storage.KindUser, Scopes: []string{"api_keys", "apps"}})
	if err != nil {
		t.Fatal(err)
	}
	return ks, acc
}

// post serves a form POST with the session cookie and extra headers.
func post(c *Console, ck *http.Cookie, path string, form url.Values, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if ck != nil {
		req.AddCookie(ck)
	}
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	return rec
}

// csrfOf returns the CSRF token of the session's pages.
func csrfOf(t *testing.T, c *Console, ck *http.Cookie) string {
	t.Helper()
	body := get(c, ck, "/keys/new").Body.String()
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no CSRF token in %s", body)
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func TestWritesNeedTheSessionsTokenAndOrigin(t *testing.T) {
	ks, acc := memoryStore(t)
	c, ck := signedIn(t, ks, acc.ID, "api_keys", "apps")
	csrf := csrfOf(t, c, ck)
	form := url.Values{"name": {"made"}}
	for name, tc := range map[string]struct {
		form    url.Values
		headers []string
	}{
		"no token":       {form, nil},
		"wrong token":    {url.Values{"name": {"made"}, "csrf": {"x" + csrf}}, nil},
		"foreign origin": {url.Values{"name": {"made"}, "csrf": {csrf}}, []string{"Origin", "https://evil.example"}},
		"cross-site":     {url.Values{"name": {"made"}, "csrf": {csrf}}, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		if rec := post(c, ck, "/keys", tc.form, tc.headers...); rec.Code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, rec.Code)
		}
	}
	keys, _, _ := ks.Keys(context.Background(), storage.Trusted, storage.KeyFilter{})
	if len(keys) != 1 {
		t.Fatalf("a refused post wrote: %d keys", len(keys))
	}
	form.Set("csrf", csrf)
	rec := post(c, ck, "/keys", form, "Origin", "http://example.com", "Sec-Fetch-Site", "same-origin")
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), `id="secret"`) {
		t.Fatalf("the console's own post: %d %s", rec.Code, rec.Body)
	}
	// The API's error, with its field, on the form.
	rec = post(c, ck, "/keys", url.Values{"csrf": {csrf}, "name": {"x"}, "more_scopes": {"secrets"}})
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "secrets") {
		t.Errorf("a scope the caller lacks: %d %s", rec.Code, rec.Body)
	}
	rec = post(c, ck, "/keys", url.Values{"csrf": {csrf}, "name": {"x"}, "more_scopes": {"Bad Scope"}})
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "(field: scopes") {
		t.Errorf("a malformed scope: %d %s", rec.Code, rec.Body)
	}
}

func TestSessionEndsWithItsKey(t *testing.T) {
	ks, acc := memoryStore(t)
	c, ck := signedIn(t, ks, acc.ID, "api_keys")
	if rec := get(c, ck, "/keys"); rec.Code != http.StatusOK {
		t.Fatalf("keys page: %d", rec.Code)
	}
	keys, _, _ := ks.Keys(context.Background(), storage.Trusted, storage.KeyFilter{})
	if err := ks.DeleteKey(context.Background(), storage.Trusted, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	if rec := get(c, ck, "/keys"); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "signed out") {
		t.Errorf("the session of a deleted key: %d %s", rec.Code, rec.Body)
	}
	// Expired on the server: the cookie alone is not enough.
	c2, ck2 := signedIn(t, ks, acc.ID, "api_keys")
	c2.sessions.now = func() time.Time { return time.Now().Add(DefaultSessionTTL + time.Second) }
	if rec := get(c2, ck2, "/keys"); rec.Code != http.StatusSeeOther {
		t.Errorf("an expired session: %d", rec.Code)
	}
}

func TestIdentityWithoutAccount(t *testing.T) {
	ks, acc := memoryStore(t)
	c, _ := signedIn(t, ks, acc.ID, "api_keys")
	for _, id := range []string{"nobody", acc.ID, strings.Repeat("a", 300)} {
		req := httptest.NewRequest(http.MethodGet, "/keys", nil)
		rec := httptest.NewRecorder()
		c.Serve(rec, req, Mount{Identity: id})
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "no-account") || strings.Contains(rec.Body.String(), "console") && strings.Contains(rec.Body.String(), `id="keys"`) {
			t.Errorf("identity %.20q: %d %s", id, rec.Code, rec.Body)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/keys", nil)
	rec := httptest.NewRecorder()
	c.Serve(rec, req, Mount{Identity: "team", Base: "/console"})
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `id="keys"`) {
		t.Errorf("identity team: %d %s", rec.Code, rec.Body)
	}
	if ck := rec.Result().Cookies(); len(ck) != 1 || ck[0].Path != "/console" || !ck[0].Secure || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("identity session cookie: %+v", ck)
	}
}

func TestSearchReadsABoundedNumberOfKeys(t *testing.T) {
	ks, acc := memoryStore(t)
	populate(t, ks, acc.ID, scanPerPage+700)
	c, ck := signedIn(t, ks, acc.ID, "api_keys")
	body := get(c, ck, "/keys?q=no-such-key").Body.String()
	if !strings.Contains(body, "Read 1000 keys") || cursorOf(body) == "" {
		t.Fatalf("first search page: %s", body)
	}
	body = get(c, ck, "/keys?q=no-such-key&after="+cursorOf(body)).Body.String()
	if !strings.Contains(body, "Read 701 keys") || cursorOf(body) != "" {
		t.Errorf("last search page: %s", body)
	}
	if rec := get(c, ck, "/keys?tag=env"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "(field: tag)") {
		t.Errorf("a tag filter without a value: %d %s", rec.Code, rec.Body)
	}
	body = get(c, ck, "/keys?q=KEY-0069").Body.String() // key-00690 … key-00699
	if n := strings.Count(body, `class="badge s-active"`); n != 10 {
		t.Errorf("search found %d keys, want 10", n)
	}
}

func TestDrawChart(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ch := drawChart([]usagePoint{
		{Start: at, Outcome: "allowed", Count: 5},
		{Start: at, Outcome: "rate_limited", Count: 2},
		{At: at.Add(time.Minute), Outcome: "allowed", Requests: 3},
		{Start: at.Add(2 * time.Minute), Outcome: "<script>", Count: 1},
	})
	if ch == nil || ch.Total != 11 || len(ch.Legend) != 3 {
		t.Fatalf("chart: %+v", ch)
	}
	svg := string(ch.SVG)
	if strings.Count(svg, "<rect") != 4 || strings.Contains(svg, "<script>") || !strings.Contains(svg, "peak 7/min") {
		t.Errorf("svg: %s", svg)
	}
	if drawChart(nil) != nil {
		t.Error("a chart of nothing")
	}
}
