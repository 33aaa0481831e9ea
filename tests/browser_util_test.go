package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// envRequireBrowser makes the browser tests fail, not skip, without
// chromium (CI sets it).
const envRequireBrowser = "KEYGATE_REQUIRE_BROWSER"

// chromiumBinary returns the headless browser, or skips t loudly (fails
// it when KEYGATE_REQUIRE_BROWSER=1) when there is none.
func chromiumBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	missing(t, envRequireBrowser, "chromium is not installed (apt-get install -y chromium); this test drives the web console in a real browser")
	return ""
}

// newBrowser starts a headless chromium of its own (own profile: no
// cookies shared with another), sending headers with every request, and
// returns a tab's context.
func newBrowser(t testing.TB, headers map[string]any) context.Context {
	t.Helper()
	bin := chromiumBinary(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if headers != nil {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers}); err != nil {
			t.Fatal(err)
		}
	}
	return ctx
}

// bdo runs browser steps with a bound, failing t with what and the page
// on error.
func bdo(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, html)
	}
}

// bget runs one browser action and returns its value.
func bget[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s: %v (at %s)", what, err, loc)
	}
	return v
}

// pageHTML returns the page's whole document.
func pageHTML(t testing.TB, ctx context.Context) string {
	t.Helper()
	return bget(t, ctx, "reading the page", chromedp.OuterHTML(chromedp.CSS("html")))
}

// artifacts is the directory of the browser tests' screenshots: kept
// after the run, printed once.
func artifacts(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KEYGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "keygate-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the full page as name.png in the artifacts directory.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png := bget(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(artifacts(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	fmt.Fprintf(os.Stderr, "console screenshot: %s\n", path)
}

// firstPaint returns the page's first contentful paint, in ms after
// navigation start, or -1 when the browser reports none within 5 s.
func firstPaint(t testing.TB, ctx context.Context) float64 {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ms, err := chromedp.Run(tctx, chromedp.Poll[float64](
		`(performance.getEntriesByName("first-contentful-paint")[0] || {}).startTime`,
		chromedp.WithPollingTimeout(5*time.Second)))
	if err != nil {
		return -1
	}
	return ms
}

// contains reports whether the page's document holds s.
func contains(t testing.TB, ctx context.Context, s string) bool {
	t.Helper()
	return strings.Contains(pageHTML(t, ctx), s)
}
