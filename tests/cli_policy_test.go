package tests

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/pgtest"
)

// line returns the value of the "Label:" line of a get's output.
func (r cliRun) line(t testing.TB, label string) string {
	t.Helper()
	for l := range strings.SplitSeq(r.Stdout, "\n") {
		if rest, ok := strings.CutPrefix(l, label+":"); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("no %q line in\n%s", label, r)
	return ""
}

// TestCLIPolicyCommands drives limit set/clear, credits set/clear and
// allow-ip on keys and accounts against a live gateway, and get's output
// of them.
func TestCLIPolicyCommands(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw
	gw.mustCLI("account", "create", "--name", "ci-bot", "--scopes", "apps")
	r := gw.mustCLI("create", "--account", "ci-bot", "--name", "deploy")
	keyID := r.Row(t, "key_")[0]
	if got := gw.mustCLI("get", keyID); got.line(t, "Limits") != "none" || got.line(t, "Allowed IPs") != "any" || got.line(t, "Credits") != "unlimited" {
		t.Errorf("a key without a policy: %s", got)
	}

	// Limits, on a key and on an account.
	r = gw.mustCLI("limit", "set", keyID, "--window", "burst=20/1s", "--window", "day=10000/1d")
	if got := r.line(t, "Limits"); got != "burst=20/1s, day=10000/24h" {
		t.Errorf("limit set: Limits %q\n%s", got, r)
	}
	var k admin.Key
	decodeJSON(t, gw.mustCLI("get", keyID, "--json"), &k)
	if len(k.Limits) != 2 || k.Limits[1] != (admin.Limit{Name: "day", Limit: 10000, Window: "24h"}) {
		t.Errorf("get --json limits: %+v", k.Limits)
	}
	r = gw.mustCLI("limit", "set", "--account", "ci-bot", "--window", "hour=600/1h")
	if got := r.line(t, "Limits"); got != "hour=600/1h" {
		t.Errorf("limit set --account: %s", r)
	}
	if got := gw.mustCLI("account", "get", "ci-bot"); got.line(t, "Limits") != "hour=600/1h" {
		t.Errorf("account get: %s", got)
	}
	gw.mustCLI("limit", "clear", "--account", "ci-bot")
	if got := gw.mustCLI("account", "get", "ci-bot").line(t, "Limits"); got != "none" {
		t.Errorf("after limit clear --account: %q", got)
	}
	if got := gw.mustCLI("limit", "clear", keyID).line(t, "Limits"); got != "none" {
		t.Errorf("after limit clear: %q", got)
	}

	// Credits.
	r = gw.mustCLI("credits", "set", keyID, "--remaining", "1000", "--refill", "1000/monthly/1")
	if got := r.line(t, "Credits"); !strings.HasPrefix(got, "1000 left, back to 1000 monthly on day 1 (next ") {
		t.Errorf("credits set: %q", got)
	}
	if got := gw.mustCLI("credits", "set", keyID, "--remaining", "5").line(t, "Credits"); !strings.HasPrefix(got, "5 left, back to 1000 monthly") {
		t.Errorf("credits set --remaining keeps the refill: %q", got)
	}
	if got := gw.mustCLI("credits", "set", keyID, "--no-refill").line(t, "Credits"); got != "5 left" {
		t.Errorf("credits set --no-refill: %q", got)
	}
	decodeJSON(t, gw.mustCLI("credits", "set", keyID, "--refill", "50/weekly/mon", "--json"), &k)
	if k.Credits == nil || k.Credits.Remaining != 5 || k.Credits.Refill == nil || *k.Credits.Refill != (admin.Refill{Amount: 50, Interval: "weekly", Day: 1}) {
		t.Errorf("credits set --json: %+v", k.Credits)
	}
	if got := gw.mustCLI("credits", "clear", keyID).line(t, "Credits"); got != "unlimited" {
		t.Errorf("credits clear: %q", got)
	}

	// Allowlists.
	if got := gw.mustCLI("allow-ip", keyID, "10.1.2.3/8", "192.0.2.7").line(t, "Allowed IPs"); got != "10.0.0.0/8, 192.0.2.7/32" {
		t.Errorf("allow-ip: %q", got)
	}
	if got := gw.mustCLI("allow-ip", "--account", "ci-bot", "2001:db8::/32").line(t, "Allowed IPs"); got != "2001:db8::/32" {
		t.Errorf("allow-ip --account: %q", got)
	}
	if got := gw.mustCLI("allow-ip", keyID, "--clear").line(t, "Allowed IPs"); got != "any" {
		t.Errorf("allow-ip --clear: %q", got)
	}

	// Mistakes: the API's 400 names the field (exit 1); the command line's
	// own are usage errors (exit 2).
	wantCode(t, gw.cli("limit", "set", keyID, "--window", "burst=0/1s"), 1, "400", "limits[0].limit")
	wantCode(t, gw.cli("limit", "set", keyID, "--window", "burst=5/500ms"), 1, "limits[0].window")
	wantCode(t, gw.cli("allow-ip", keyID, "10.0.0.0/33"), 1, "allowed_ips[0]")
	wantCode(t, gw.cli("credits", "set", keyID, "--refill", "10/monthly/40"), 1, "credits.refill.day")
	wantCode(t, gw.cli("limit", "set", "--window", "burst=5/1s"), 2, "give a key id or --account")
	wantCode(t, gw.cli("limit", "set", keyID), 2, "--window")
	wantCode(t, gw.cli("limit", "set", keyID, "--window", "burst"), 2, "name=limit/duration")
	wantCode(t, gw.cli("credits", "set", keyID), 2, "nothing to change")
	wantCode(t, gw.cli("credits", "set", keyID, "--refill", "1/daily", "--no-refill"), 2, "exclude")
	wantCode(t, gw.cli("allow-ip", keyID), 2, "CIDR")
	wantCode(t, gw.cli("limit", "clear", "key_missing"), 3, "404")
}
