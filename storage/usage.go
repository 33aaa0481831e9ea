package storage

import (
	"errors"
	"net/netip"
	"time"
)

// This file holds the usage-policy types keys and accounts carry (rate
// windows, credits, IP allowlists) and the shared counters that make them
// hold across nodes. The request path decides locally (package limiter);
// the keystore only stores policies and settles counts in batches:
// SyncWindows for rate windows, LeaseCredits and ReturnCredits for credits.
// policy.go holds their validation, refill.go the refill schedule, and
// principal.go who may set them.

// Window is a named rate limit: at most Limit requests per Length.
// Length is a whole number of seconds, from MinWindowLength to
// MaxWindowLength (RateLimit-Policy states windows in seconds).
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
	// Day is the day of the month (1-31, clamped to the month's last day;
	// 0 is read as 1) for RefillMonthly, the weekday (0 Sunday - 6) for
	// RefillWeekly, and 0 for RefillDaily; the refill happens at 00:00 UTC
	// of that day (Refill.Next).
	Day int
}

// Credits is a key's credit policy. A nil *Credits is unlimited.
// Remaining is the balance as last settled in the store, with any refill
// due by the time it was read applied; nodes hold leases taken from it, so
// the spendable total is never above it.
type Credits struct {
	Remaining int64
	Refill    *Refill
	// NextRefill is when Refill next applies; zero without Refill. It is
	// filled in by the keystore on reads; writes ignore it.
	NextRefill time.Time
}

// Policy is the usage policy of a key or of an account (an account's
// windows are shared by all its keys). The zero Policy limits nothing.
// Policies read from the keystore are in canonical form (see checkPolicy)
// and, inside a Credential, shared: they must not be modified.
type Policy struct {
	Limits []Window
	// AllowedIPs are masked prefixes (10.0.0.0/8, never 10.1.2.3/8), IPv4
	// ones in IPv4 form; empty allows every address.
	AllowedIPs []netip.Prefix
	// Credits is only meaningful on keys.
	Credits *Credits
}

// IsZero reports whether p limits nothing.
func (p *Policy) IsZero() bool {
	return len(p.Limits) == 0 && len(p.AllowedIPs) == 0 && p.Credits == nil
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
	// Add is what to add to the count; 0 only reads it.
	Add int64
}

// WindowCount is the total of one window across all nodes after a sync.
// A window is identified by Subject, Name, Length and Start: a window
// renamed or resized under the same name starts from zero.
type WindowCount struct {
	Subject string
	Name    string
	Start   time.Time
	Length  time.Duration
	// Count is the total of [Start, Start+Length).
	Count int64
	// Previous is the total of the window before, [Start-Length, Start),
	// which the sliding-window estimate weighs by the part of it still
	// inside the sliding window.
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

// ErrUnlimited is LeaseCredits' answer for a key without credits: it may
// spend without limit. It is not a failure; the lease is then empty.
var ErrUnlimited = errors.New("the key has no credit limit")

// CreditBalance is a key's credits as a backend stores them: in a record
// of their own, updated by every lease, so that the key's record does not
// churn. A key without one has no credit limit.
type CreditBalance struct {
	KeyID     string
	Remaining int64
	Refill    *Refill
	// NextRefill is when Refill next applies; zero without Refill.
	NextRefill time.Time
	// Epoch changes whenever the balance is set rather than spent: on
	// every refill and every edit. It only grows, even across the record's
	// deletion and re-creation (see nextEpoch).
	Epoch int64
}

// Counter names one shared window count, as a backend stores it.
type Counter struct {
	Subject string
	Name    string
	Length  time.Duration
	Start   time.Time
}

// CounterAdd is an addition to one shared window count.
type CounterAdd struct {
	Counter
	Add int64
	// ExpiresAt is when the count is of no more use: once its window is
	// neither the current nor the previous one (Start + 2 × Length).
	ExpiresAt time.Time
}

// StartAt returns the start of the window w that holds t: t truncated to
// w.Length since the Unix epoch, in UTC, as WindowDelta.Start wants it.
func (w Window) StartAt(t time.Time) time.Time {
	us, l := t.UnixMicro(), w.Length.Microseconds()
	if l <= 0 {
		return t.UTC()
	}
	mod := us % l
	if mod < 0 {
		mod += l
	}
	return time.UnixMicro(us - mod).UTC()
}
