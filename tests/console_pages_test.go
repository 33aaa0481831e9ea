package tests

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// unlabelled lists the page's visible form fields that have neither a
// label nor an aria-label.
const unlabelled = `[...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
	.filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label"))
	.map(e => e.name || e.id || e.outerHTML)`

// TestConsoleOperatorPages signs in with the keyboard only, as an
// operator whose key holds accounts and audit scopes: the accounts and
// audit pages, every field of every page labelled, the pages readable at
// a phone's width, and the dark theme following the system.
func TestConsoleOperatorPages(t *testing.T) {
	env := startConsole(t)
	gw := env.gw
	ops := gw.createAccount("ops", "accounts:read", "audit:read", "api_keys", "apps")
	for _, name := range []string{"web", "billing", "ci-bot"} {
		acc := gw.createAccount(name, "apps")
		gw.createKey(acc, nil, "name", name+"-deploy", "tags", map[string]string{"env": "prod"})
	}
	opsKey, opsSecret := gw.createKey(ops, nil, "name", "ops-console")
	gw.createKey(ops, []string{"apps:read"}, "name", "dashboards")

	ctx := newBrowser(t, nil)
	// Keyboard only: the key field has the focus; Enter submits.
	bdo(t, ctx, "keyboard sign-in",
		chromedp.Navigate(env.console+"/signin"), chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.KeyEvent(opsSecret), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS("#keys")))
	bdo(t, ctx, "tab", chromedp.KeyEvent("\t"))
	if first := bget(t, ctx, "focus", chromedp.Evaluate[string](`document.activeElement.textContent`)); first != "Skip to content" {
		t.Errorf("the first Tab focuses %q, want the skip link", first)
	}
	html := pageHTML(t, ctx)
	for _, want := range []string{"web-deploy", "billing-deploy", "ops-console", `href="/console/accounts"`, `href="/console/audit"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the operator's keys page lacks %q", want)
		}
	}
	screenshot(t, ctx, "keys-operator")

	bdo(t, ctx, "accounts", chromedp.Navigate(env.console+"/accounts"), chromedp.WaitVisible(chromedp.CSS("#accounts")))
	if html := pageHTML(t, ctx); !strings.Contains(html, "ci-bot") || !strings.Contains(html, "billing") {
		t.Errorf("accounts page: %s", html)
	}
	screenshot(t, ctx, "accounts")
	bdo(t, ctx, "audit", chromedp.Navigate(env.console+"/audit?action=key.create"), chromedp.WaitVisible(chromedp.CSS("#audit")))
	if html := pageHTML(t, ctx); strings.Count(html, "key.create") < 5 {
		t.Errorf("audit page: %s", html)
	}
	screenshot(t, ctx, "audit")

	// The operator sees other accounts' keys but acts only on what it
	// covers: a key of "web" (scope apps, which ops holds) is its to edit.
	bdo(t, ctx, "another account's key", chromedp.Navigate(env.console+"/keys?account=web"), chromedp.WaitVisible(chromedp.CSS("#keys")))
	if html := pageHTML(t, ctx); !strings.Contains(html, "web-deploy") || strings.Contains(html, "billing-deploy") {
		t.Errorf("account filter: %s", html)
	}

	// Limits and credits with their current use.
	limited, limitedSecret := gw.createKey(ops, []string{"apps"}, "name", "metered",
		"limits", []map[string]any{{"name": "minute", "limit": 100, "window": "1m"}},
		"credits", map[string]any{"remaining": 500})
	for range 3 {
		if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", limitedSecret); r.Status != http.StatusOK {
			t.Fatalf("metered key: %d %s", r.Status, r.Body)
		}
	}
	bdo(t, ctx, "metered key", chromedp.Navigate(env.console+"/keys/"+limited), chromedp.WaitVisible(chromedp.CSS("#tokens")))
	html = pageHTML(t, ctx)
	for _, want := range []string{"minute (1m)", "of 100", "Credits", "remaining"} {
		if !strings.Contains(html, want) {
			t.Errorf("the metered key's page lacks %q", want)
		}
	}
	screenshot(t, ctx, "key-metered")

	pages := map[string]string{
		"keys": "/keys", "new key": "/keys/new", "key": "/keys/" + opsKey, "accounts": "/accounts", "audit": "/audit",
	}
	for name, path := range pages {
		bdo(t, ctx, name, chromedp.Navigate(env.console+path), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if bad := bget(t, ctx, "labels", chromedp.Evaluate[[]string](unlabelled)); len(bad) > 0 {
			t.Errorf("%s page: fields without a label: %v", name, bad)
		}
	}

	// A phone's width: nothing wider than the screen.
	bdo(t, ctx, "phone", chromedp.EmulateViewport(390, 844))
	for _, path := range []string{"/keys", "/keys/" + opsKey, "/keys/new"} {
		bdo(t, ctx, "phone page", chromedp.Navigate(env.console+path), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if wide := bget(t, ctx, "width", chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`)); wide {
			t.Errorf("%s is wider than a phone's screen", path)
		}
	}
	screenshot(t, ctx, "key-phone")

	// Dark and light follow the system.
	bdo(t, ctx, "desktop", chromedp.EmulateViewport(1280, 900))
	background := func(scheme string) string {
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
			t.Fatal(err)
		}
		bdo(t, ctx, scheme, chromedp.Navigate(env.console+"/keys/"+opsKey), chromedp.WaitVisible(chromedp.CSS("main h1")))
		return bget(t, ctx, "background", chromedp.Evaluate[string](`getComputedStyle(document.documentElement).backgroundColor`))
	}
	light, dark := background("light"), background("dark")
	screenshot(t, ctx, "key-dark")
	if light == dark || dark != "rgb(15, 18, 22)" {
		t.Errorf("backgrounds: light %s, dark %s", light, dark)
	}
	if r := do(t, "GET", env.console+"/static/console.css", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "prefers-color-scheme") {
		t.Errorf("stylesheet: %d", r.Status)
	}
}
