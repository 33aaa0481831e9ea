package cli

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
)

func TestSplitScopes(t *testing.T) {
	for in, want := range map[string][]string{
		"":                    {},
		"apps":                {"apps"},
		"apps,runs:read":      {"apps", "runs:read"},
		" apps , ,runs:read,": {"apps", "runs:read"},
	} {
		if got := splitScopes(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitScopes(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseTags(t *testing.T) {
	got, err := parseTags([]string{"env=prod", "team=infra", "expr=a=b", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"env": "prod", "team": "infra", "expr": "a=b", "empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseTags = %v, want %v", got, want)
	}
	if got, err := parseTags(nil); got != nil || err != nil {
		t.Errorf("parseTags(nil) = %v, %v; want nil, nil", got, err)
	}
	for _, bad := range [][]string{{"env"}, {"=prod"}, {"env=a", "env=b"}} {
		if _, err := parseTags(bad); err == nil {
			t.Errorf("parseTags(%q): no error", bad)
		}
	}
}

func TestParseExpires(t *testing.T) {
	now := time.Date(2030, 1, 2, 15, 4, 5, 123, time.FixedZone("X", 3600))
	for in, want := range map[string]string{
		"720h":                      "2030-02-01T14:04:05Z",
		"30d":                       "2030-02-01T14:04:05Z",
		"90s":                       "2030-01-02T14:05:35Z",
		"2031-05-06T07:08:09Z":      "2031-05-06T07:08:09Z",
		"2031-05-06T09:08:09+02:00": "2031-05-06T07:08:09Z",
		"2031-05-06T07:08:09.5Z":    "2031-05-06T07:08:09.5Z",
	} {
		got, err := parseExpires(in, now)
		if err != nil || got != want {
			t.Errorf("parseExpires(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "-1h", "0s", "2031-05-06"} {
		if got, err := parseExpires(bad, now); err == nil {
			t.Errorf("parseExpires(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseGrace(t *testing.T) {
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "1d": 24 * time.Hour, "90s": 90 * time.Second, "0s": 0} {
		if got, err := parseGrace(in); err != nil || got != want {
			t.Errorf("parseGrace(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1h", "tomorrow"} {
		if _, err := parseGrace(bad); err == nil {
			t.Errorf("parseGrace(%q): no error", bad)
		}
	}
}

func TestOnlyActiveToken(t *testing.T) {
	key := func(statuses ...string) admin.Key {
		k := admin.Key{ID: "key_1"}
		for i, s := range statuses {
			k.Tokens = append(k.Tokens, admin.Token{ID: fmt.Sprintf("tok_%d", i), Status: s})
		}
		return k
	}
	if id, err := onlyActiveToken(key("expiring", "active", "expired")); err != nil || id != "tok_1" {
		t.Errorf("one active: %q, %v", id, err)
	}
	if _, err := onlyActiveToken(key("expired")); err == nil || !strings.Contains(err.Error(), "no active token") {
		t.Errorf("none active: %v", err)
	}
	_, err := onlyActiveToken(key("active", "expiring", "active"))
	if err == nil {
		t.Fatal("two active: no error")
	}
	for _, want := range []string{"tok_0", "tok_2", "--token"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("two active: %q does not name %s", err, want)
		}
	}
}

// columnStarts returns the offsets where each header word starts.
func columnStarts(header string) []int {
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	return starts
}

// checkAligned checks that every row of a table has a cell starting at each
// header column.
func checkAligned(t *testing.T, table string, wantRows int) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != wantRows+1 {
		t.Fatalf("table has %d lines, want %d:\n%s", len(lines), wantRows+1, table)
	}
	starts := columnStarts(lines[0])
	for _, line := range lines[1:] {
		for _, s := range starts {
			if s >= len(line) || line[s] == ' ' || (s > 0 && line[s-1] != ' ') {
				t.Errorf("row not aligned at column %d:\n%s", s, table)
			}
		}
	}
	return lines
}

func TestRenderAccounts(t *testing.T) {
	var b bytes.Buffer
	err := renderAccounts(&b, []admin.Account{
		{ID: "acc_1", Name: "ci-bot", Kind: "service", Team: "infra", Scopes: []string{"apps", "runs:read"}},
		{ID: "acc_22222", Name: "alice\tx", Kind: "user", Scopes: []string{}, Disabled: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := checkAligned(t, b.String(), 2)
	if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, []string{"ID", "NAME", "KIND", "TEAM", "SCOPES", "DISABLED"}) {
		t.Errorf("header = %q", got)
	}
	if got := strings.Fields(lines[1]); !reflect.DeepEqual(got, []string{"acc_1", "ci-bot", "service", "infra", "apps,runs:read", "no"}) {
		t.Errorf("row 1 = %q", got)
	}
	if got := strings.Fields(lines[2]); !reflect.DeepEqual(got, []string{"acc_22222", "alice", "x", "user", "-", "-", "yes"}) {
		t.Errorf("row 2 = %q", got)
	}
}

func TestRenderKeys(t *testing.T) {
	created := time.Date(2030, 1, 2, 15, 4, 5, 999, time.FixedZone("X", 3600))
	var b bytes.Buffer
	err := renderKeys(&b, []admin.Key{
		{ID: "key_1", Account: "acc_1", Name: "deploy", EffectiveScopes: []string{"apps:run"}, CreatedAt: created,
			Tokens: []admin.Token{{Status: "active"}, {Status: "expiring"}, {Status: "active"}, {Status: "expired"}}},
		{ID: "key_2", Account: "acc_2", Name: "a much longer name", EffectiveScopes: []string{}, CreatedAt: created},
	}, names{"acc_1": "ci-bot"})
	if err != nil {
		t.Fatal(err)
	}
	lines := checkAligned(t, b.String(), 2)
	if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, []string{"ID", "ACCOUNT", "NAME", "SCOPES", "TOKENS", "CREATED"}) {
		t.Errorf("header = %q", got)
	}
	if got := strings.Fields(lines[1]); !reflect.DeepEqual(got, []string{"key_1", "ci-bot", "deploy", "apps:run", "2", "2030-01-02T14:04:05Z"}) {
		t.Errorf("row 1 = %q", got)
	}
	// An account without a known name shows as its id.
	if got := strings.Fields(lines[2]); got[1] != "acc_2" {
		t.Errorf("row 2 = %q", got)
	}
}

func TestRenderTokens(t *testing.T) {
	exp := time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC)
	var b bytes.Buffer
	err := renderTokens(&b, []admin.Token{
		{ID: "tok_1", Key: "key_1", Name: "default", Hint: "sk-AbC…xyZ9", ExpiresAt: &exp, Status: "active"},
		{ID: "tok_2", Key: "key_1", Hint: "sk-DeF…uvW8", Status: "expiring"},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"TOKEN", "HINT", "EXPIRES", "2030-01-02T15:04:05Z", "never", "sk-AbC…xyZ9", "expiring"} {
		if !strings.Contains(out, want) {
			t.Errorf("tokens table lacks %q:\n%s", want, out)
		}
	}
}
