package storagetest

import (
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

func delta(subject, name string, start time.Time, length time.Duration, add int64) storage.WindowDelta {
	return storage.WindowDelta{Subject: subject, Name: name, Start: start, Length: length, Add: add}
}

func sync1(t testing.TB, ks *storage.Keystore, deltas ...storage.WindowDelta) []storage.WindowCount {
	t.Helper()
	out, err := ks.SyncWindows(ctx, deltas)
	if err != nil {
		t.Fatal(err)
	}
	check(t, len(out) == len(deltas), "%d counts for %d deltas", len(out), len(deltas))
	return out
}

// testSyncWindows: syncs add to shared counts and answer each window's
// total with the previous window's; deltas of one window add up; Add 0
// reads; a window's length is part of its identity.
func testSyncWindows(t *testing.T, ks *storage.Keystore) {
	t0 := time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)
	const l = time.Minute
	got := sync1(t, ks, delta("key_a", "m", t0, l, 5), delta("key_a", "m", t0, l, 2), delta("acc_b", "m", t0, l, 1))
	check(t, got[0].Count == 7 && got[1].Count == 7 && got[2].Count == 1 && got[0].Previous == 0,
		"first sync: %+v", got)
	check(t, got[0].Subject == "key_a" && got[0].Name == "m" && got[0].Start.Equal(t0) && got[0].Length == l, "a count's window: %+v", got[0])
	got = sync1(t, ks, delta("key_a", "m", t0.Add(l), l, 3))
	check(t, got[0].Count == 3 && got[0].Previous == 7, "the next window: %+v", got)
	got = sync1(t, ks, delta("key_a", "m", t0, l, 0), delta("key_a", "m", t0.Add(5*l), l, 0))
	check(t, got[0].Count == 7 && got[1].Count == 0 && got[1].Previous == 0, "reads: %+v", got)
	got = sync1(t, ks, delta("key_a", "m", t0, 2*l, 1))
	check(t, got[0].Count == 1, "the same name over another length: %+v", got)
	// Both windows of a sliding estimate in one batch.
	got = sync1(t, ks, delta("key_c", "m", t0, l, 4), delta("key_c", "m", t0.Add(l), l, 6))
	check(t, got[0].Count == 4 && got[1].Count == 6 && got[1].Previous == 4, "a window and its previous in one batch: %+v", got)
	// Another node sees the totals.
	other := storage.New(ks.Backend())
	got, err := other.SyncWindows(ctx, []storage.WindowDelta{delta("key_a", "m", t0.Add(l), l, 1)})
	check(t, err == nil && got[0].Count == 4 && got[0].Previous == 7, "another node's sync: %+v, %v", got, err)
	out, err := ks.SyncWindows(ctx, nil)
	check(t, err == nil && len(out) == 0, "an empty sync: %+v, %v", out, err)
	for _, bad := range []storage.WindowDelta{
		delta("", "m", t0, l, 1), delta("key_a", "", t0, l, 1), delta("key_a", "m", time.Time{}, l, 1),
		delta("key_a", "m", t0, 0, 1), delta("key_a", "m", t0, l, -1),
	} {
		_, err := ks.SyncWindows(ctx, []storage.WindowDelta{bad})
		mustBe(t, "a bad delta", err, storage.ErrInvalid)
	}
}

// testPruneWindows: counts two windows old go, by the callers' clock (the
// latest start synced), not the store's.
func testPruneWindows(t *testing.T, ks *storage.Keystore) {
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) // long ago by the store's clock
	const l = time.Minute
	sync1(t, ks, delta("key_a", "m", t0, l, 5), delta("key_a", "h", t0, time.Hour, 2))
	got := sync1(t, ks, delta("key_a", "m", t0, l, 0))
	check(t, got[0].Count == 5, "a count gone by the store's clock: %+v", got)
	// A fresh keystore prunes on its first sync: the minute window of t0
	// ended before the previous window of t0+3m, the hour window not.
	pruner := storage.New(ks.Backend())
	got, err := pruner.SyncWindows(ctx, []storage.WindowDelta{delta("key_a", "m", t0.Add(3*l), l, 1)})
	check(t, err == nil && got[0].Count == 1, "the pruning sync: %+v, %v", got, err)
	got = sync1(t, ks, delta("key_a", "m", t0, l, 0), delta("key_a", "h", t0, time.Hour, 0), delta("key_a", "m", t0.Add(3*l), l, 0))
	check(t, got[0].Count == 0 && got[1].Count == 2 && got[2].Count == 1, "after pruning: %+v", got)
}

// testConcurrentSyncs: syncs of the same windows from many nodes at once
// lose no count.
func testConcurrentSyncs(t *testing.T, ks *storage.Keystore) {
	t0 := time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)
	const l = time.Minute
	const nodes, rounds = 8, 15
	var wg sync.WaitGroup
	for i := range nodes {
		node := storage.New(ks.Backend())
		wg.Go(func() {
			for range rounds {
				d := []storage.WindowDelta{delta("key_a", "m", t0, l, 1), delta("acc_b", "m", t0, l, 2)}
				if i%2 == 1 {
					d[0], d[1] = d[1], d[0]
				}
				if _, err := node.SyncWindows(ctx, d); err != nil {
					t.Errorf("node %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := sync1(t, ks, delta("key_a", "m", t0, l, 0), delta("acc_b", "m", t0, l, 0))
	check(t, got[0].Count == nodes*rounds && got[1].Count == 2*nodes*rounds, "after concurrent syncs: %+v, want %d and %d",
		got, nodes*rounds, 2*nodes*rounds)
}
