package storage

import (
	"net/netip"
	"time"
)

// This file holds the usage-policy types keys and accounts carry (rate
// windows, credits, IP allowlists) and the shared counters that make them
// hold across nodes. The request path decides locally (package limiter);
// the keystore only stores policies and settles counts in batches.

// Window is a named rate limit: at most Limit requests per Length.
type Window struct {
	Name   string
	Limit  int64
	Length time.Duration
}

// Refill intervals of Credits.
const (
	RefillDaily   = "daily"
	RefillWeekly  = "weekly"
	RefillMonthly = "monthly"
)

// Refill puts a key's credit balance back to Amount on a schedule.
type Refill struct {
	Amount int64
	// Interval is RefillDaily, RefillWeekly or RefillMonthly.
	Interval string
	// Day is the day of the month (1-31, clamped to the month's last day)
	// for RefillMonthly, the weekday (0 Sunday - 6) for RefillWeekly; the
	// refill happens at 00:00 UTC of that day.
	Day int
}

// Credits is a key's credit policy. A nil *Credits is unlimited.
// Remaining is the balance as last settled in the store; nodes hold leases
// taken from it, so the spendable total is never above it.
type Credits struct {
	Remaining int64
	Refill    *Refill
}

// Policy is the usage policy of a key or of an account (an account's
// windows are shared by all its keys). The zero Policy limits nothing.
type Policy struct {
	Limits     []Window
	AllowedIPs []netip.Prefix
	// Credits is only meaningful on keys.
	Credits *Credits
}

// WindowDelta is what one node admitted in one window since its last sync.
type WindowDelta struct {
	// Subject is the key id or account id the window belongs to.
	Subject string
	// Name is the window's name in its policy.
	Name string
	// Start is the window's start: the time truncated to Length since
	// the Unix epoch.
	Start  time.Time
	Length time.Duration
	Add    int64
}

// WindowCount is the total of one window across all nodes after a sync.
type WindowCount struct {
	Subject string
	Name    string
	Start   time.Time
	Count   int64
	// Previous is the total of the window before Start (Start - Length)
	// across all nodes: a sliding-window estimate weighs it in.
	Previous int64
}

// CreditLease is a block of credits a node took from a key's balance. The
// node spends it locally and returns what it did not use; a lease from
// before a refill or an admin edit (an older Epoch) cannot be returned.
type CreditLease struct {
	KeyID   string
	Granted int64
	// Remaining is the store's balance after the lease.
	Remaining int64
	// Epoch changes on every refill and every edit of the balance.
	Epoch int64
	// NextRefill is zero when the balance is never refilled.
	NextRefill time.Time
}
