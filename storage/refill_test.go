package storage

import (
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestRefillNext: the next refill is strictly after the time given, at
// 00:00 UTC, the monthly day clamped to the month's last day.
func TestRefillNext(t *testing.T) {
	for _, tt := range []struct {
		interval string
		day      int
		after    string
		want     string
	}{
		{RefillDaily, 0, "2026-03-14T15:09:26Z", "2026-03-15T00:00:00Z"},
		{RefillDaily, 0, "2026-03-15T00:00:00Z", "2026-03-16T00:00:00Z"}, // strictly after
		{RefillDaily, 0, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"},
		{RefillDaily, 0, "2026-03-14T23:30:00-05:00", "2026-03-16T00:00:00Z"}, // 04:30 UTC on the 15th
		// 2026-03-14 is a Saturday.
		{RefillWeekly, 1, "2026-03-14T12:00:00Z", "2026-03-16T00:00:00Z"},
		{RefillWeekly, 6, "2026-03-14T12:00:00Z", "2026-03-21T00:00:00Z"}, // today's passed at midnight
		{RefillWeekly, 6, "2026-03-13T23:59:59Z", "2026-03-14T00:00:00Z"},
		{RefillWeekly, 0, "2026-03-14T00:00:00Z", "2026-03-15T00:00:00Z"},
		{RefillMonthly, 1, "2026-03-14T12:00:00Z", "2026-04-01T00:00:00Z"},
		{RefillMonthly, 1, "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"},
		{RefillMonthly, 15, "2026-03-14T12:00:00Z", "2026-03-15T00:00:00Z"},
		{RefillMonthly, 31, "2026-04-15T00:00:00Z", "2026-04-30T00:00:00Z"}, // clamped
		{RefillMonthly, 31, "2026-04-30T00:00:00Z", "2026-05-31T00:00:00Z"},
		{RefillMonthly, 30, "2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z"},
		{RefillMonthly, 29, "2028-02-01T00:00:00Z", "2028-02-29T00:00:00Z"}, // leap year
		{RefillMonthly, 31, "2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z"},
		{RefillMonthly, 0, "2026-03-14T12:00:00Z", "2026-04-01T00:00:00Z"}, // 0 reads as 1
	} {
		r := Refill{Amount: 1, Interval: tt.interval, Day: tt.day}
		if got := r.Next(utc(tt.after)); !got.Equal(utc(tt.want)) || got.Location() != time.UTC {
			t.Errorf("%s day %d after %s = %v, want %s", tt.interval, tt.day, tt.after, got, tt.want)
		}
	}
	if got := (&Refill{Interval: "hourly"}).Next(time.Now()); !got.IsZero() {
		t.Errorf("unknown interval: %v", got)
	}
}

// TestSettle: a refill due resets the balance (unused credits do not
// carry over), moves the epoch on and schedules the next one after now,
// skipping the refills missed meanwhile; none due changes nothing.
func TestSettle(t *testing.T) {
	b := CreditBalance{KeyID: "key_x", Remaining: 3, Refill: &Refill{Amount: 100, Interval: RefillDaily},
		NextRefill: utc("2026-03-15T00:00:00Z"), Epoch: 7}
	before := b
	if b.settle(utc("2026-03-14T23:59:59Z")) || b != before {
		t.Fatalf("settled before the refill: %+v", b)
	}
	if !b.settle(utc("2026-03-18T10:00:00Z")) {
		t.Fatal("no refill when one was due")
	}
	if b.Remaining != 100 || b.Epoch <= 7 || !b.NextRefill.Equal(utc("2026-03-19T00:00:00Z")) {
		t.Fatalf("after the refill: %+v", b)
	}
	none := CreditBalance{Remaining: 5, Epoch: 1}
	if none.settle(time.Now()) || none.Remaining != 5 {
		t.Fatalf("a balance without refill settled: %+v", none)
	}
	if e := nextEpoch(1 << 62); e != 1<<62+1 {
		t.Fatalf("nextEpoch(2^62) = %d", e)
	}
	if e := nextEpoch(0); e < time.Now().Add(-time.Minute).UnixMicro() {
		t.Fatalf("a new record's epoch %d is below the clock", e)
	}
}

func TestWindowStartAt(t *testing.T) {
	for _, tt := range []struct {
		length   time.Duration
		at, want string
	}{
		{time.Minute, "2026-03-14T15:09:26Z", "2026-03-14T15:09:00Z"},
		{24 * time.Hour, "2026-03-14T15:09:26Z", "2026-03-14T00:00:00Z"},
		{7 * time.Second, "1970-01-01T00:00:20Z", "1970-01-01T00:00:14Z"},
		{time.Hour, "2026-03-14T15:09:26+05:30", "2026-03-14T09:00:00Z"},
	} {
		got := Window{Length: tt.length}.StartAt(utc(tt.at))
		if !got.Equal(utc(tt.want)) || got.Location() != time.UTC {
			t.Errorf("StartAt(%s, %v) = %v, want %s", tt.at, tt.length, got, tt.want)
		}
	}
}
