package storage

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func win(name string, limit int64, length time.Duration) Window {
	return Window{Name: name, Limit: limit, Length: length}
}

// TestCheckPolicyRefuses: every bad value is the invalid-input error
// naming its JSON field.
func TestCheckPolicyRefuses(t *testing.T) {
	many := make([]Window, MaxWindows+1)
	for i := range many {
		many[i] = win(string(rune('a'+i)), 1, time.Second)
	}
	ips := make([]netip.Prefix, MaxAllowedIPs+1)
	for i := range ips {
		ips[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 0}), 24)
	}
	ok := win("ok", 1, time.Second)
	for _, tt := range []struct {
		name   string
		p      Policy
		forKey bool
		field  string
	}{
		{"name empty", Policy{Limits: []Window{ok, win("", 1, time.Second)}}, true, "limits[1].name"},
		{"name upper", Policy{Limits: []Window{win("Burst", 1, time.Second)}}, true, "limits[0].name"},
		{"name long", Policy{Limits: []Window{win(strings.Repeat("a", 33), 1, time.Second)}}, true, "limits[0].name"},
		{"name twice", Policy{Limits: []Window{ok, ok}}, true, "limits[1].name"},
		{"limit zero", Policy{Limits: []Window{win("a", 0, time.Second)}}, true, "limits[0].limit"},
		{"limit huge", Policy{Limits: []Window{win("a", MaxAmount+1, time.Second)}}, true, "limits[0].limit"},
		{"window short", Policy{Limits: []Window{win("a", 1, 999*time.Millisecond)}}, true, "limits[0].window"},
		{"window fraction", Policy{Limits: []Window{win("a", 1, 1500*time.Millisecond)}}, true, "limits[0].window"},
		{"window long", Policy{Limits: []Window{win("a", 1, MaxWindowLength+time.Second)}}, true, "limits[0].window"},
		{"windows many", Policy{Limits: many}, true, "limits"},
		{"ip invalid", Policy{AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}}, true, "allowed_ips[1]"},
		{"ips many", Policy{AllowedIPs: ips}, true, "allowed_ips"},
		{"credits on account", Policy{Credits: &Credits{Remaining: 1}}, false, "credits"},
		{"remaining negative", Policy{Credits: &Credits{Remaining: -1}}, true, "credits.remaining"},
		{"amount zero", Policy{Credits: &Credits{Refill: &Refill{Interval: RefillDaily}}}, true, "credits.refill.amount"},
		{"interval", Policy{Credits: &Credits{Refill: &Refill{Amount: 1, Interval: "hourly"}}}, true, "credits.refill.interval"},
		{"daily day", Policy{Credits: &Credits{Refill: &Refill{Amount: 1, Interval: RefillDaily, Day: 1}}}, true, "credits.refill.day"},
		{"weekly day", Policy{Credits: &Credits{Refill: &Refill{Amount: 1, Interval: RefillWeekly, Day: 7}}}, true, "credits.refill.day"},
		{"monthly day", Policy{Credits: &Credits{Refill: &Refill{Amount: 1, Interval: RefillMonthly, Day: 32}}}, true, "credits.refill.day"},
		{"monthly negative", Policy{Credits: &Credits{Refill: &Refill{Amount: 1, Interval: RefillMonthly, Day: -1}}}, true, "credits.refill.day"},
	} {
		_, err := checkPolicy(tt.p, tt.forKey)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || e.Field != tt.field {
			t.Errorf("%s: %v (field %q), want invalid %q", tt.name, err, fieldOf(err), tt.field)
		}
	}
}

func fieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// TestCheckPolicyCanonical: allowlists are masked, IPv4 in IPv4 form,
// without duplicates; a monthly day 0 is the 1st; empty lists are none.
func TestCheckPolicyCanonical(t *testing.T) {
	p, err := checkPolicy(Policy{
		Limits: []Window{win("day", 10000, 24*time.Hour), win("burst", 20, time.Second)},
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("::ffff:192.168.1.7/120"), netip.MustParsePrefix("2001:db8::1/32")},
		Credits: &Credits{Remaining: 5, Refill: &Refill{Amount: 5, Interval: RefillMonthly}, NextRefill: time.Now()},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	wantIPs := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	if !slices.Equal(p.AllowedIPs, wantIPs) || p.Limits[0].Name != "day" || p.Credits.Refill.Day != 1 || !p.Credits.NextRefill.IsZero() {
		t.Fatalf("canonical policy: %+v %+v", p, p.Credits)
	}
	empty, err := checkPolicy(Policy{Limits: []Window{}, AllowedIPs: []netip.Prefix{}}, false)
	if err != nil || empty.Limits != nil || empty.AllowedIPs != nil || !empty.IsZero() {
		t.Fatalf("empty policy: %+v, %v", empty, err)
	}
}

func TestParseAllowedIP(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":        "10.0.0.0/8",
		"10.1.2.3/8":        "10.0.0.0/8",
		"10.1.2.3":          "10.1.2.3/32",
		"2001:db8::1":       "2001:db8::1/128",
		"2001:DB8::/32":     "2001:db8::/32",
		"::ffff:10.0.0.1":   "10.0.0.1/32",
		"::ffff:0.0.0.0/96": "0.0.0.0/0",
	} {
		got, err := ParseAllowedIP("allowed_ips[0]", in)
		if err != nil || got.String() != want {
			t.Errorf("ParseAllowedIP(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "10.0.0", "fe80::1%eth0", "fe80::/10%eth0", "example.com", "10.0.0.0/8 "} {
		_, err := ParseAllowedIP("allowed_ips[2]", in)
		if !errors.Is(err, ErrInvalid) || fieldOf(err) != "allowed_ips[2]" {
			t.Errorf("ParseAllowedIP(%q) = %v, want invalid allowed_ips[2]", in, err)
		}
	}
}

func TestPolicyAllows(t *testing.T) {
	open := Policy{}
	list := Policy{AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}}
	for addr, want := range map[string]bool{
		"10.9.8.7": true, "::ffff:10.9.8.7": true, "11.0.0.1": false, "2001:db8::5": true, "2001:db9::5": false,
	} {
		a := netip.MustParseAddr(addr)
		if !open.Allows(a) || list.Allows(a) != want {
			t.Errorf("Allows(%s) = %v, want %v", addr, list.Allows(a), want)
		}
	}
}

func TestFormatWindowLength(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second: "1s", 10 * time.Second: "10s", time.Minute: "1m", 90 * time.Second: "1m30s",
		24 * time.Hour: "24h", 2*time.Hour + 10*time.Minute: "2h10m", time.Hour + 10*time.Second: "1h0m10s",
	} {
		if got := FormatWindowLength(d); got != want {
			t.Errorf("FormatWindowLength(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(FormatWindowLength(d)); err != nil || back != d {
			t.Errorf("%q does not parse back to %v: %v, %v", FormatWindowLength(d), d, back, err)
		}
	}
}
