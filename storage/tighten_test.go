package storage

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// TestLoosens spells out "at least as tight" part by part.
func TestLoosens(t *testing.T) {
	minute := win("m", 100, time.Minute)
	monthly := &Refill{Amount: 1000, Interval: RefillMonthly, Day: 1}
	for _, tt := range []struct {
		name       string
		next, prev Policy
		want       string
	}{
		{"same", Policy{Limits: []Window{minute}}, Policy{Limits: []Window{minute}}, ""},
		{"nothing to nothing", Policy{}, Policy{}, ""},
		{"a window added", Policy{Limits: []Window{minute, win("s", 5, time.Second)}}, Policy{Limits: []Window{minute}}, ""},
		{"a window on an unlimited", Policy{Limits: []Window{minute}}, Policy{}, ""},
		{"lower limit, renamed", Policy{Limits: []Window{win("x", 50, time.Minute)}}, Policy{Limits: []Window{minute}}, ""},
		{"longer window, a multiple", Policy{Limits: []Window{win("m", 100, time.Hour)}}, Policy{Limits: []Window{minute}}, ""},
		{"window removed", Policy{}, Policy{Limits: []Window{minute}}, "limits"},
		{"higher limit", Policy{Limits: []Window{win("m", 101, time.Minute)}}, Policy{Limits: []Window{minute}}, "limits"},
		{"shorter window", Policy{Limits: []Window{win("m", 100, time.Second)}}, Policy{Limits: []Window{minute}}, "limits"},
		{"longer, not a multiple", Policy{Limits: []Window{win("m", 100, 90*time.Second)}}, Policy{Limits: []Window{minute}}, "limits"},
		{"allowlist on an open key", Policy{AllowedIPs: prefixes("10.0.0.0/8")}, Policy{}, ""},
		{"allowlist narrowed", Policy{AllowedIPs: prefixes("10.1.0.0/16", "10.2.3.4/32")}, Policy{AllowedIPs: prefixes("10.0.0.0/8")}, ""},
		{"allowlist removed", Policy{}, Policy{AllowedIPs: prefixes("10.0.0.0/8")}, "allowed_ips"},
		{"allowlist widened", Policy{AllowedIPs: prefixes("10.0.0.0/7")}, Policy{AllowedIPs: prefixes("10.0.0.0/8")}, "allowed_ips"},
		{"allowlist elsewhere", Policy{AllowedIPs: prefixes("2001:db8::/32")}, Policy{AllowedIPs: prefixes("10.0.0.0/8")}, "allowed_ips"},
		{"credits on an unlimited key", Policy{Credits: &Credits{Remaining: 1 << 40, Refill: monthly}}, Policy{}, ""},
		{"credits removed", Policy{}, Policy{Credits: &Credits{Remaining: 5}}, "credits"},
		{"balance lowered", Policy{Credits: &Credits{Remaining: 4}}, Policy{Credits: &Credits{Remaining: 5}}, ""},
		{"balance raised", Policy{Credits: &Credits{Remaining: 6}}, Policy{Credits: &Credits{Remaining: 5}}, "credits.remaining"},
		{"refill added", Policy{Credits: &Credits{Remaining: 5, Refill: monthly}}, Policy{Credits: &Credits{Remaining: 5}}, "credits.refill"},
		{"refill removed", Policy{Credits: &Credits{Remaining: 5}}, Policy{Credits: &Credits{Remaining: 5, Refill: monthly}}, ""},
		{"refill smaller", Policy{Credits: &Credits{Remaining: 5, Refill: &Refill{Amount: 10, Interval: RefillMonthly, Day: 1}}},
			Policy{Credits: &Credits{Remaining: 5, Refill: monthly}}, ""},
		{"refill larger", Policy{Credits: &Credits{Remaining: 5, Refill: &Refill{Amount: 1001, Interval: RefillMonthly, Day: 1}}},
			Policy{Credits: &Credits{Remaining: 5, Refill: monthly}}, "credits.refill"},
		{"refill sooner", Policy{Credits: &Credits{Remaining: 5, Refill: &Refill{Amount: 1000, Interval: RefillDaily}}},
			Policy{Credits: &Credits{Remaining: 5, Refill: monthly}}, "credits.refill"},
		{"refill moved", Policy{Credits: &Credits{Remaining: 5, Refill: &Refill{Amount: 1000, Interval: RefillMonthly, Day: 2}}},
			Policy{Credits: &Credits{Remaining: 5, Refill: monthly}}, "credits.refill"},
	} {
		if got := loosens(&tt.next, &tt.prev); got != tt.want {
			t.Errorf("%s: loosens = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestBudgetAuthority: the trusted principal, or accounts:update on an
// account covered that is not the caller's own.
func TestBudgetAuthority(t *testing.T) {
	mine := &Account{ID: "acc_mine", Scopes: []string{"apps"}}
	other := &Account{ID: "acc_other", Scopes: []string{"apps"}}
	wide := &Account{ID: "acc_wide", Scopes: []string{"secrets"}}
	manager := Principal{Actor: "key_m", AccountID: mine.ID, Scopes: []string{"accounts", "api_keys", "apps"}}
	reader := Principal{Actor: "key_r", AccountID: mine.ID, Scopes: []string{"accounts:read", "api_keys", "apps"}}
	for _, tt := range []struct {
		name string
		p    Principal
		a    *Account
		want bool
	}{
		{"trusted on any", Trusted, mine, true},
		{"manager on another", manager, other, true},
		{"manager on its own", manager, mine, false},
		{"manager on one it does not cover", manager, wide, false},
		{"without accounts:update", reader, other, false},
		{"the zero principal", Principal{}, other, false},
	} {
		if got := tt.p.budgetAuthority(tt.a); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func forbiddenField(t *testing.T, what string, err error, field string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrForbidden) || e.Field != field {
		t.Errorf("%s: %v, want forbidden on %q", what, err, field)
	}
}

// TestTightenOnly: without authority, a policy may only be tightened;
// with it, anything goes.
func TestTightenOnly(t *testing.T) {
	mine := &Account{ID: "acc_mine"}
	other := &Account{ID: "acc_other"}
	manager := Principal{Actor: "key_m", AccountID: mine.ID, Scopes: []string{"accounts", "api_keys"}}
	prev := Policy{Limits: []Window{win("m", 100, time.Minute)}, Credits: &Credits{Remaining: 10}}
	tighter := Policy{Limits: []Window{win("m", 50, time.Minute)}, Credits: &Credits{Remaining: 9}}
	looser := Policy{Limits: []Window{win("m", 100, time.Minute)}, Credits: &Credits{Remaining: 11}}
	if err := manager.tightenOnly(mine, "key x", &tighter, &prev); err != nil {
		t.Errorf("tightening its own: %v", err)
	}
	forbiddenField(t, "loosening its own", manager.tightenOnly(mine, "key x", &looser, &prev), "credits.remaining")
	if err := manager.tightenOnly(other, "key y", &looser, &prev); err != nil {
		t.Errorf("a manager loosening another account's: %v", err)
	}
	if err := Trusted.tightenOnly(mine, "key x", &Policy{}, &prev); err != nil {
		t.Errorf("trusted removing a policy: %v", err)
	}
}

// TestNewKeyPolicy: without authority a new key is bound at least as
// its creator's key (and account, on another account); a creator with
// credits makes no keys there.
func TestNewKeyPolicy(t *testing.T) {
	mine := &Account{ID: "acc_mine"}
	other := &Account{ID: "acc_other"}
	p := Principal{Actor: "key_me", AccountID: mine.ID, Scopes: []string{"accounts:read", "api_keys"}}
	own := &Policy{Limits: []Window{win("m", 100, time.Minute)}, AllowedIPs: prefixes("10.0.0.0/8")}
	ownAccount := &Policy{Limits: []Window{win("day", 1000, 24*time.Hour)}}

	got, err := p.newKeyPolicy(mine, Policy{}, own, ownAccount)
	if err != nil || len(got.Limits) != 1 || got.Limits[0] != own.Limits[0] || len(got.AllowedIPs) != 1 {
		t.Errorf("default on its own account: %+v, %v; want the creator's limits and allowlist", got, err)
	}
	got, err = p.newKeyPolicy(mine, Policy{Limits: []Window{win("s", 1, time.Second), win("m", 60, time.Minute)},
		AllowedIPs: prefixes("10.1.0.0/16"), Credits: &Credits{Remaining: 5}}, own, ownAccount)
	if err != nil || len(got.Limits) != 2 || got.Credits == nil {
		t.Errorf("tighter on its own account: %+v, %v", got, err)
	}
	_, err = p.newKeyPolicy(mine, Policy{Limits: []Window{}}, own, ownAccount)
	forbiddenField(t, "no limits while bound by some", err, "limits")
	_, err = p.newKeyPolicy(mine, Policy{AllowedIPs: prefixes("0.0.0.0/0")}, own, ownAccount)
	forbiddenField(t, "a wider allowlist", err, "allowed_ips")
	_, err = p.newKeyPolicy(other, Policy{}, own, ownAccount)
	forbiddenField(t, "on another account, escaping its own account's window", err, "limits")
	got, err = p.newKeyPolicy(other, Policy{Limits: []Window{win("m", 100, time.Minute), win("day", 1000, 24*time.Hour)}}, own, ownAccount)
	if err != nil || len(got.Limits) != 2 {
		t.Errorf("on another account, bound by both: %+v, %v", got, err)
	}
	withCredits := &Policy{Credits: &Credits{Remaining: 5}}
	_, err = p.newKeyPolicy(mine, Policy{Credits: &Credits{Remaining: 1}}, withCredits, &Policy{})
	forbiddenField(t, "a creator with credits", err, "credits")
	got, err = Trusted.newKeyPolicy(mine, Policy{}, &Policy{}, &Policy{})
	if err != nil || !got.IsZero() {
		t.Errorf("trusted default: %+v, %v; want nothing", got, err)
	}
}
