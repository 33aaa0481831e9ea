package storage

import "time"

// Next returns the first refill strictly after t: 00:00 UTC of the next
// day (daily), of the next weekday Day (weekly), or of the next day Day of
// a month, clamped to the month's last day (monthly: day 31 refills on
// 30 April and on 28 or 29 February). It returns the zero time for an
// unknown interval.
func (r *Refill) Next(t time.Time) time.Time {
	t = t.UTC()
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	switch r.Interval {
	case RefillDaily:
		return midnight.AddDate(0, 0, 1)
	case RefillWeekly:
		days := (r.Day - int(midnight.Weekday()) + 7) % 7
		if days == 0 {
			days = 7 // today's refill, at midnight, is not after t
		}
		return midnight.AddDate(0, 0, days)
	case RefillMonthly:
		day := max(r.Day, 1)
		for m := 0; ; m++ {
			first := time.Date(t.Year(), t.Month()+time.Month(m), 1, 0, 0, 0, 0, time.UTC)
			at := first.AddDate(0, 0, min(day, daysIn(first))-1)
			if at.After(t) {
				return at
			}
		}
	}
	return time.Time{}
}

// daysIn returns the number of days of the month that starts at first.
func daysIn(first time.Time) int {
	return first.AddDate(0, 1, -1).Day()
}

// settle applies to b the refill due at now, if any: the balance goes
// back to the refill's amount (not added to: unused credits do not carry
// over), the epoch changes, and the next refill is the first one after
// now (refills missed while nothing leased are not stacked). It reports
// whether b changed.
func (b *CreditBalance) settle(now time.Time) bool {
	if b.Refill == nil || b.NextRefill.IsZero() || now.Before(b.NextRefill) {
		return false
	}
	b.Remaining = b.Refill.Amount
	b.NextRefill = b.Refill.Next(now)
	b.Epoch = nextEpoch(b.Epoch)
	return true
}

// nextEpoch returns the epoch after old (0 for a new record): greater
// than old and, being at least the wall clock in microseconds, than any
// epoch set before, so that an epoch never comes back even when a key's
// credits are removed and given again (their record then starts from
// nothing). The wall clock, not the caller's: leases may run on an
// injected one.
func nextEpoch(old int64) int64 {
	return max(old+1, time.Now().UnixMicro())
}

// credits returns b as a key's Credits, settled at now without writing.
func (b *CreditBalance) credits(now time.Time) *Credits {
	s := *b
	s.settle(now)
	return &Credits{Remaining: s.Remaining, Refill: s.Refill, NextRefill: s.NextRefill}
}
