package limiter

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

func (m *memStore) syncCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

// waitSyncs waits until the store has answered n syncs (polling; the
// manual clock decides when they happen).
func waitSyncs(t *testing.T, st *memStore, n int) {
	t.Helper()
	for st.syncCount() < n {
		time.Sleep(time.Millisecond)
	}
}

// The loop syncs every SyncInterval, and early when a window's unsynced
// count passes SyncFraction of its headroom; Close sends what is pending.
func TestSyncLoop(t *testing.T) {
	clk := newClock()
	st := newStore()
	l := New(st, Options{Clock: clk})
	l.Start()
	q := keyQuery("key_a", storage.Window{Name: "min", Limit: 100, Length: time.Minute})
	waitTimer(t, clk, 1) // the loop waits for its interval
	l.Allow(ctx, q)      // 1 of a headroom of 100: no early sync
	clk.Advance(250 * time.Millisecond)
	waitSyncs(t, st, 1)
	start := clk.Now().Truncate(time.Minute)
	if got := st.count("key_a", "min", start); got != 1 {
		t.Fatalf("after the interval the store counts %d, want 1", got)
	}
	waitTimer(t, clk, 1)
	for range 25 { // 25 ≥ 0.25 × 99: sync now, not in 250 ms
		l.Allow(ctx, q)
	}
	waitTimer(t, clk, 2) // the early sync waits out MinSyncInterval
	clk.Advance(20 * time.Millisecond)
	waitSyncs(t, st, 2)
	if got := st.count("key_a", "min", start); got != 26 {
		t.Fatalf("after the early sync the store counts %d, want 26", got)
	}
	for range 3 {
		l.Allow(ctx, q)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := st.count("key_a", "min", start); got != 29 {
		t.Fatalf("after Close the store counts %d, want 29", got)
	}
}

// A window whose period rolled before the sync sends the old period's
// count under its own start, and the totals land in the right periods.
func TestSyncAcrossPeriods(t *testing.T) {
	clk := newClock()
	st := newStore()
	a := newTestLimiter(t, st, clk, Options{})
	b := newTestLimiter(t, st, clk, Options{})
	q := keyQuery("key_a", storage.Window{Name: "s10", Limit: 100, Length: 10 * time.Second})
	first := clk.Now().Truncate(10 * time.Second)
	for range 40 {
		a.Allow(ctx, q)
	}
	clk.Advance(10 * time.Second)
	for range 5 {
		a.Allow(ctx, q)
	}
	for range 30 {
		b.Allow(ctx, q)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, got2 := st.count("key_a", "s10", first), st.count("key_a", "s10", first.Add(10*time.Second)); got != 40 || got2 != 35 {
		t.Fatalf("store: %d in the first period, %d in the second; want 40 and 35", got, got2)
	}
	// b hears a's 40 of the previous period: 40 × 1 + 35 = 75 at the period's start.
	b.Allow(ctx, q)
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d := b.Allow(ctx, q); d.Windows()[0].Remaining != 100-40-37 {
		t.Fatalf("b sees %d remaining, want %d", d.Windows()[0].Remaining, 100-40-37)
	}
}
