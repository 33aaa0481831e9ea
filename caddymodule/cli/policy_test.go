package cli

import (
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
)

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]admin.Limit{
		"burst=20/1s":   {Name: "burst", Limit: 20, Window: "1s"},
		"day=10000/24h": {Name: "day", Limit: 10000, Window: "24h"},
		"day=10000/1d":  {Name: "day", Limit: 10000, Window: "24h"},
		"slow=5/90s":    {Name: "slow", Limit: 5, Window: "1m30s"},
		"odd=1/500ms":   {Name: "odd", Limit: 1, Window: "500ms"}, // the API refuses it, naming the field
		"Caps=0/1h":     {Name: "Caps", Limit: 0, Window: "1h"},
	} {
		got, err := parseWindow(in)
		if err != nil || got != want {
			t.Errorf("parseWindow(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"burst", "burst=20", "=20/1s", "burst=x/1s", "burst=20/soon", "burst=20/-1s", "burst=20/0s"} {
		if _, err := parseWindow(bad); err == nil || exitCode(err) != exitUsage {
			t.Errorf("parseWindow(%q): %v, want a usage error", bad, err)
		}
	}
}

func TestParseRefill(t *testing.T) {
	for in, want := range map[string]admin.Refill{
		"1000/monthly/1":  {Amount: 1000, Interval: "monthly", Day: 1},
		"1000/monthly":    {Amount: 1000, Interval: "monthly"},
		"50/daily":        {Amount: 50, Interval: "daily"},
		"7/weekly/mon":    {Amount: 7, Interval: "weekly", Day: 1},
		"7/Weekly/Sunday": {Amount: 7, Interval: "weekly", Day: 0},
		"7/weekly/6":      {Amount: 7, Interval: "weekly", Day: 6},
	} {
		got, err := parseRefill(in)
		if err != nil || got != want {
			t.Errorf("parseRefill(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"1000", "x/daily", "1000/monthly/first", "1000/monthly/mon", "1/2/3/4"} {
		if _, err := parseRefill(bad); err == nil || exitCode(err) != exitUsage {
			t.Errorf("parseRefill(%q): %v, want a usage error", bad, err)
		}
	}
}

func TestPolicyLines(t *testing.T) {
	next := time.Date(2030, 4, 1, 0, 0, 0, 0, time.UTC)
	if got := creditLine(&admin.Credits{Remaining: 700, Refill: &admin.Refill{Amount: 1000, Interval: "monthly", Day: 1}, NextRefill: &next}); got != "700 left, back to 1000 monthly on day 1 (next 2030-04-01T00:00:00Z)" {
		t.Errorf("creditLine = %q", got)
	}
	if got := creditLine(&admin.Credits{Remaining: 3, Refill: &admin.Refill{Amount: 9, Interval: "weekly", Day: 2}}); got != "3 left, back to 9 weekly on tuesday" {
		t.Errorf("creditLine = %q", got)
	}
	if got := creditLine(nil); got != "unlimited" {
		t.Errorf("creditLine(nil) = %q", got)
	}
	if got := limitList([]admin.Limit{{Name: "burst", Limit: 20, Window: "1s"}, {Name: "day", Limit: 10000, Window: "24h"}}); got != "burst=20/1s, day=10000/24h" {
		t.Errorf("limitList = %q", got)
	}
	if got := limitList(nil) + " " + ipList(nil) + " " + ipList([]string{"10.0.0.0/8", "2001:db8::/32"}); got != "none any 10.0.0.0/8, 2001:db8::/32" {
		t.Errorf("lists = %q", got)
	}
}
