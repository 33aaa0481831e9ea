package tests

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/keygate/keygate/internal/pgtest"
)

// consoleEnv is a gateway with the Tower API (apikey_auth), a console
// signed in with keys, and a console behind basic_auth.
type consoleEnv struct {
	gw *gateway
	// console and identity are the consoles' URLs (ending /console).
	console, identity string
}

func startConsole(t *testing.T) *consoleEnv {
	t.Helper()
	chromiumBinary(t)
	up := newUpstream(t)
	dsn := pgtest.DSN(t)
	consolePort, identityPort := pgtest.FreePort(t), pgtest.FreePort(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: pgtest.Schema(t, dsn),
		Site: fmt.Sprintf(towerSite, up.URL),
		Extra: fmt.Sprintf(`
:%d {
	handle_path /console/* {
		apikey_console
	}
}

:%d {
	basic_auth {
		alice %s
		mallory %s
	}
	handle_path /console/* {
		apikey_console
	}
}
`, consolePort, identityPort, hash, hash),
	})
	return &consoleEnv{gw: gw,
		console:  fmt.Sprintf("http://localhost:%d/console", consolePort),
		identity: fmt.Sprintf("http://localhost:%d/console", identityPort)}
}

// signIn signs the browser in with a pasted key.
func signIn(t *testing.T, ctx context.Context, consoleURL, secret string) {
	t.Helper()
	bdo(t, ctx, "signing in",
		chromedp.Navigate(consoleURL+"/signin"),
		chromedp.SendKeys(chromedp.CSS("#key"), secret),
		chromedp.Submit(chromedp.CSS("#key")),
		chromedp.WaitVisible(chromedp.CSS("h1")),
	)
}

// TestConsoleKeySignIn drives the console in a real browser as a person
// signed in with a key: the keys page, a key created and its secret used
// against the API, rotated, revoked; another account's keys out of reach,
// also by crafted requests; a cross-site form refused.
func TestConsoleKeySignIn(t *testing.T) {
	env := startConsole(t)
	gw := env.gw
	team := gw.createAccount("team", "api_keys", "apps")
	other := gw.createAccount("other", "api_keys", "apps")
	_, teamSecret := gw.createKey(team, []string{"api_keys", "apps"}, "name", "team-admin")
	otherKey, otherSecret := gw.createKey(other, []string{"apps"}, "name", "other-secret-key")
	otherToken := gw.firstToken(otherKey)
	for i := range 3 {
		gw.createKey(team, []string{"apps:read"}, "name", fmt.Sprintf("reader-%d", i), "tags", map[string]string{"env": "prod"})
	}

	ctx := newBrowser(t, nil)
	signIn(t, ctx, env.console, teamSecret)
	bdo(t, ctx, "keys page", chromedp.WaitVisible(chromedp.CSS("#keys")))
	loc := bget(t, ctx, "location", chromedp.Location())
	if !strings.HasSuffix(loc, "/console/keys") || strings.Contains(loc, teamSecret) {
		t.Errorf("after sign-in at %s", loc)
	}
	bdo(t, ctx, "keys page, loaded afresh", chromedp.Navigate(env.console+"/keys"), chromedp.WaitVisible(chromedp.CSS("#keys")))
	paint := firstPaint(t, ctx)
	t.Logf("keys page: first contentful paint %.0f ms", paint)
	fmt.Fprintf(os.Stderr, "console keys page: first contentful paint %.0f ms\n", paint)
	html := pageHTML(t, ctx)
	if !strings.Contains(html, "team-admin") || !strings.Contains(html, "reader-2") || strings.Contains(html, "other-secret-key") {
		t.Errorf("keys page of team shows the wrong keys:\n%s", html)
	}
	if strings.Contains(html, teamSecret) {
		t.Error("the signed-in key's secret is in the page")
	}
	if n := bget(t, ctx, "localStorage", chromedp.Evaluate[int](`localStorage.length + sessionStorage.length`)); n != 0 {
		t.Errorf("the console stored %d items in web storage", n)
	}
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{env.console + "/keys"}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "keygate_console" {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly || !session.Secure || session.SameSite != network.CookieSameSiteStrict || session.Path != "/console" {
		t.Fatalf("session cookie: %+v", session)
	}
	if strings.Contains(session.Value, teamSecret) {
		t.Error("the cookie holds the key")
	}
	screenshot(t, ctx, "keys")

	// Filter by tag and search by text.
	bdo(t, ctx, "tag filter", chromedp.Navigate(env.console+"/keys?tag=env:prod"), chromedp.WaitVisible(chromedp.CSS("#keys")))
	if html := pageHTML(t, ctx); strings.Contains(html, "team-admin") || !strings.Contains(html, "reader-0") {
		t.Errorf("tag filter env:prod: %s", html)
	}
	bdo(t, ctx, "search", chromedp.Navigate(env.console+"/keys?q=READER-1"), chromedp.WaitVisible(chromedp.CSS("#keys")))
	if html := pageHTML(t, ctx); strings.Contains(html, "reader-0") || !strings.Contains(html, "reader-1") {
		t.Errorf("search reader-1: %s", html)
	}

	// Create a key with one of the caller's scopes; the secret is shown once.
	bdo(t, ctx, "create a key",
		chromedp.Navigate(env.console+"/keys/new"),
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "deploy"),
		chromedp.SendKeys(chromedp.CSS("#tags"), "env=ci"),
		chromedp.Click(chromedp.CSS(`input[name=scope][value=apps]`)),
	)
	screenshot(t, ctx, "new-key")
	bdo(t, ctx, "submit the key", chromedp.Click(chromedp.CSS("#create")), chromedp.WaitVisible(chromedp.CSS("#secret")))
	secret := bget(t, ctx, "secret", chromedp.Value(chromedp.CSS("#secret")))
	if !strings.HasPrefix(secret, "sk-") {
		t.Fatalf("secret %q", secret)
	}
	screenshot(t, ctx, "created")
	if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", secret); r.Status != http.StatusOK {
		t.Fatalf("the console's new key against apikey_auth: %d %s", r.Status, r.Body)
	}
	bdo(t, ctx, "to the key", chromedp.Click(chromedp.CSS("#done")), chromedp.WaitVisible(chromedp.CSS("#tokens")))
	if contains(t, ctx, secret) {
		t.Error("the secret is still in the page after navigating away")
	}
	keyURL := bget(t, ctx, "location", chromedp.Location())
	screenshot(t, ctx, "key")
	// Back to the POST's answer: no-store, so the browser does not show
	// it again (Chromium answers ERR_CACHE_MISS rather than resend).
	_ = chromedp.Do(ctx, chromedp.NavigateBack())
	if contains(t, ctx, secret) {
		t.Error("the secret is back in the page after going back")
	}

	// Rotate with no grace: the old secret stops, the new one works.
	bdo(t, ctx, "rotate",
		chromedp.Navigate(keyURL), chromedp.WaitVisible(chromedp.CSS("#tokens")),
		chromedp.SetValue(chromedp.CSS(`select[name=grace]`), ""),
		chromedp.Click(chromedp.CSS("button.rotate")),
		chromedp.WaitVisible(chromedp.CSS("#secret")),
	)
	rotated := bget(t, ctx, "rotated secret", chromedp.Value(chromedp.CSS("#secret")))
	if rotated == secret || !strings.HasPrefix(rotated, "sk-") {
		t.Fatalf("rotated secret %q", rotated)
	}
	if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", secret); r.Status != http.StatusUnauthorized {
		t.Errorf("the rotated-out secret: %d", r.Status)
	}
	if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", rotated); r.Status != http.StatusOK {
		t.Errorf("the rotated secret: %d %s", r.Status, r.Body)
	}

	// Revoke, with a confirmation: then 401.
	bdo(t, ctx, "revoke",
		chromedp.Navigate(keyURL), chromedp.WaitVisible(chromedp.CSS("#tokens")),
		chromedp.Click(chromedp.CSS("a.revoke")),
		chromedp.WaitVisible(chromedp.CSS("#confirm")),
	)
	screenshot(t, ctx, "revoke-confirm")
	bdo(t, ctx, "confirm revoke", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", rotated); r.Status != http.StatusUnauthorized {
		t.Errorf("the revoked secret: %d %s", r.Status, r.Body)
	}

	editID, _ := gw.createKey(team, []string{"apps"}, "name", "deploy")
	// Edit: labels saved; an expiry in the past is the API's 400, shown
	// with its message and field.
	bdo(t, ctx, "edit labels",
		chromedp.Navigate(env.console+"/keys/"+editID), chromedp.WaitVisible(chromedp.CSS("#edit-key")),
		chromedp.SetValue(chromedp.CSS("#edit-key #name"), "deploy-renamed"),
		chromedp.SetValue(chromedp.CSS("#edit-key #tags"), "env=ci, owner=web"),
		chromedp.Submit(chromedp.CSS("#edit-key #name")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	)
	if html := pageHTML(t, ctx); !strings.Contains(html, "deploy-renamed") || !strings.Contains(html, "owner=web") {
		t.Errorf("edited labels not shown: %s", html)
	}
	keyID, _ := gw.createKey(team, []string{"apps"}, "name", "to-edit")
	tokenID := gw.firstToken(keyID)
	keyURL = env.console + "/keys/" + keyID
	bdo(t, ctx, "past expiry",
		chromedp.Navigate(keyURL), chromedp.WaitVisible(chromedp.CSS("#exp-"+tokenID)),
		chromedp.SetValue(chromedp.CSS("#exp-"+tokenID), "2001-01-01T00:00"),
		chromedp.Submit(chromedp.CSS("#exp-"+tokenID)),
		chromedp.WaitVisible(chromedp.CSS("#form-error")),
	)
	if msg := bget(t, ctx, "error", chromedp.Text(chromedp.CSS("#form-error"))); !strings.Contains(msg, "future") || !strings.Contains(msg, "field: expires_at") {
		t.Errorf("past expiry error: %q", msg)
	}
	future := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Minute)
	bdo(t, ctx, "future expiry",
		chromedp.Navigate(keyURL), chromedp.WaitVisible(chromedp.CSS("#exp-"+tokenID)),
		chromedp.SetValue(chromedp.CSS("#exp-"+tokenID), future.Format("2006-01-02T15:04")),
		chromedp.Submit(chromedp.CSS("#exp-"+tokenID)),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	)
	tok := gw.mustAdmin("GET", "/keys/"+keyID, nil, http.StatusOK)["tokens"].([]any)[0].(map[string]any)
	if tok["expires_at"] != future.Format(time.RFC3339) {
		t.Errorf("expiry set through the console: %v, want %s", tok["expires_at"], future.Format(time.RFC3339))
	}

	// Another account's key: not found through the console, by link or
	// by crafted same-origin requests carrying the session and its CSRF
	// token.
	bdo(t, ctx, "another account's key", chromedp.Navigate(env.console+"/keys/"+otherKey), chromedp.WaitVisible(chromedp.CSS("h1")))
	if html := pageHTML(t, ctx); !strings.Contains(html, "Not found") || strings.Contains(html, "other-secret-key") {
		t.Errorf("another account's key page: %s", html)
	}
	bdo(t, ctx, "keys page", chromedp.Navigate(env.console+"/keys?account="+other), chromedp.WaitVisible(chromedp.CSS("h1")))
	if html := pageHTML(t, ctx); strings.Contains(html, "other-secret-key") {
		t.Errorf("keys of another account listed: %s", html)
	}
	bdo(t, ctx, "keys page", chromedp.Navigate(env.console+"/keys"), chromedp.WaitVisible(chromedp.CSS("#keys")))
	crafted := bget(t, ctx, "crafted requests", chromedp.Evaluate[[]int](fmt.Sprintf(`(async () => {
		const csrf = document.querySelector("input[name=csrf]").value;
		const post = (path, body) => fetch(%q + path, {method: "POST", body: new URLSearchParams(Object.assign({csrf}, body))}).then(r => r.status);
		return [
			await post("/keys/%s/tokens/%s/revoke", {}),
			await post("/keys/%s/delete", {}),
			await post("/keys/%s", {name: "stolen"}),
			await post("/keys/%s/tokens/%s/rotate", {grace: ""}),
			await post("/keys", {account: "other", name: "planted"}),
		];
	})()`, env.console, otherKey, otherToken, otherKey, otherKey, otherKey, otherToken), chromedp.EvalAwaitPromise))
	for i, status := range crafted {
		if status != http.StatusNotFound {
			t.Errorf("crafted request %d on another account: %d, want 404", i, status)
		}
	}
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", otherSecret); r.Status != http.StatusOK {
		t.Errorf("the other account's key after the crafted requests: %d", r.Status)
	}
	if k := gw.mustAdmin("GET", "/keys/"+otherKey, nil, http.StatusOK); k["name"] != "other-secret-key" {
		t.Errorf("the other account's key changed: %v", k)
	}

	// A cross-site form post: the browser sends it from another origin.
	teamKey2, teamSecret2 := gw.createKey(team, []string{"apps"}, "name", "victim")
	victimToken := gw.firstToken(teamKey2)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/keys/%s/tokens/%s/revoke"><input name="csrf" value="guess"></form><script>document.getElementById("f").submit()</script>`,
			env.console, teamKey2, victimToken)
	}))
	defer evil.Close()
	bdo(t, ctx, "cross-site post", chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.CSS("h1")))
	if html := pageHTML(t, ctx); !strings.Contains(html, "Refused") {
		t.Errorf("cross-site form post not refused: %s", html)
	}
	if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", teamSecret2); r.Status != http.StatusOK {
		t.Errorf("the victim token after a cross-site post: %d", r.Status)
	}
	// With the cookie stolen: a foreign Origin, or no CSRF token, is refused.
	form := "csrf=guess"
	for name, headers := range map[string][]string{
		"foreign origin": {"Origin", "http://evil.example", "Cookie", "keygate_console=" + session.Value, "Content-Type", "application/x-www-form-urlencoded"},
		"cross-site":     {"Sec-Fetch-Site", "cross-site", "Cookie", "keygate_console=" + session.Value, "Content-Type", "application/x-www-form-urlencoded"},
		"bad csrf token": {"Cookie", "keygate_console=" + session.Value, "Content-Type", "application/x-www-form-urlencoded"},
	} {
		r := do(t, "POST", env.console+"/keys/"+teamKey2+"/tokens/"+victimToken+"/revoke", []byte(form), headers...)
		if r.Status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, r.Status)
		}
	}
	if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", teamSecret2); r.Status != http.StatusOK {
		t.Errorf("the victim token after forged posts: %d", r.Status)
	}

	// Rotate with the default grace (24h): old and new both work.
	bdo(t, ctx, "rotate with grace",
		chromedp.Navigate(env.console+"/keys/"+teamKey2), chromedp.WaitVisible(chromedp.CSS("#tokens")),
		chromedp.Click(chromedp.CSS("button.rotate")), chromedp.WaitVisible(chromedp.CSS("#secret")))
	graced := bget(t, ctx, "rotated secret", chromedp.Value(chromedp.CSS("#secret")))
	for name, s := range map[string]string{"old, in its grace": teamSecret2, "new": graced} {
		if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", s); r.Status != http.StatusOK {
			t.Errorf("%s secret after a rotation with grace: %d", name, r.Status)
		}
	}
	if html := pageHTML(t, ctx); !strings.Contains(html, "s-expiring") {
		t.Error("the rotated-out token is not shown as expiring")
	}

	// Sign out: the session is gone on the server too.
	bdo(t, ctx, "sign out", chromedp.Navigate(env.console+"/keys"), chromedp.WaitVisible(chromedp.CSS("#keys")),
		chromedp.Click(chromedp.CSS(`form[action$="/signout"] button`)), chromedp.WaitVisible(chromedp.CSS("#key")))
	screenshot(t, ctx, "signin")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", env.console+"/keys", nil)
	req.AddCookie(&http.Cookie{Name: "keygate_console", Value: session.Value})
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "/console/signin") {
		t.Errorf("the signed-out session's cookie still works: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if strings.Contains(gw.Output(), teamSecret) || strings.Contains(gw.Output(), secret) {
		t.Error("a key reached Caddy's log")
	}
}

// TestConsoleIdentitySignIn signs a person in by basic_auth in front of
// the console: alice acts as the account alice; mallory, with no account,
// sees a "no account" page and nothing else.
func TestConsoleIdentitySignIn(t *testing.T) {
	env := startConsole(t)
	gw := env.gw
	alice := gw.createAccount("alice", "api_keys", "apps")
	other := gw.createAccount("bob", "api_keys", "apps")
	gw.createKey(alice, nil, "name", "alice-key")
	gw.createKey(other, nil, "name", "bob-key")

	basic := func(user string) map[string]any {
		return map[string]any{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":pw"))}
	}
	ctx := newBrowser(t, basic("alice"))
	bdo(t, ctx, "alice's console", chromedp.Navigate(env.identity+"/"), chromedp.WaitVisible(chromedp.CSS("#keys")))
	html := pageHTML(t, ctx)
	if !strings.Contains(html, "alice-key") || strings.Contains(html, "bob-key") || !strings.Contains(html, "alice · account alice") {
		t.Errorf("alice's keys page: %s", html)
	}
	bdo(t, ctx, "alice creates a key",
		chromedp.Navigate(env.identity+"/keys/new"), chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "from-console"),
		chromedp.Click(chromedp.CSS("#create")), chromedp.WaitVisible(chromedp.CSS("#secret")))
	secret := bget(t, ctx, "secret", chromedp.Value(chromedp.CSS("#secret")))
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != http.StatusOK {
		t.Errorf("alice's new key: %d %s", r.Status, r.Body)
	}
	var found bool
	for _, k := range gw.mustAdmin("GET", "/keys?account=alice", nil, http.StatusOK)["items"].([]any) {
		found = found || k.(map[string]any)["name"] == "from-console"
	}
	if !found {
		t.Error("the key alice created is not on her account")
	}
	audit := gw.mustAdmin("GET", "/audit?action=key.create", nil, http.StatusOK)["items"].([]any)
	if actor := audit[0].(map[string]any)["actor"]; actor != "identity:alice" {
		t.Errorf("audit actor of alice's key: %v", actor)
	}

	mallory := newBrowser(t, basic("mallory"))
	bdo(t, mallory, "mallory's console", chromedp.Navigate(env.identity+"/keys"), chromedp.WaitVisible(chromedp.CSS("#no-account")))
	html = pageHTML(t, mallory)
	if strings.Contains(html, "alice-key") || strings.Contains(html, "bob-key") || !strings.Contains(html, "mallory") {
		t.Errorf("mallory's page: %s", html)
	}
	screenshot(t, mallory, "no-account")
	r := do(t, "GET", env.identity+"/keys", nil, "Authorization", basic("mallory")["Authorization"].(string))
	if r.Status != http.StatusForbidden {
		t.Errorf("no-account page status %d", r.Status)
	}
}
