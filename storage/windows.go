package storage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// pruneEvery is how often, at most, a keystore's syncs also delete the
// window counts that expired.
const pruneEvery = time.Minute

// SyncWindows adds each delta to the shared count of its window and
// returns, for each delta in order, the window's total across all nodes
// and the total of the window before it (Previous), which the
// sliding-window estimate needs. Deltas naming the same window are added
// together (and get the same totals); a delta with Add 0 only reads. It is
// one transaction: one statement on PostgreSQL. Now and then (at most
// once a minute) it also deletes the counts no window needs any more:
// those whose window ended before the previous window of the latest Start
// in the batch (the callers' clock, not the store's). It writes no audit
// event and sends no change notice: it is the limiter's background call,
// never a request's.
func (ks *Keystore) SyncWindows(ctx context.Context, deltas []WindowDelta) ([]WindowCount, error) {
	if len(deltas) == 0 {
		return []WindowCount{}, nil
	}
	counters := make([]Counter, len(deltas))
	sums := make(map[Counter]int64, len(deltas))
	var latest time.Time
	for i, d := range deltas {
		switch {
		case d.Subject == "" || d.Name == "":
			return nil, invalid("", "window delta %d names no subject or window", i)
		case d.Length <= 0 || d.Start.IsZero():
			return nil, invalid("", "window delta %d (%s %s) has no start or length", i, d.Subject, d.Name)
		case d.Add < 0:
			return nil, invalid("", "window delta %d (%s %s) adds %d", i, d.Subject, d.Name, d.Add)
		}
		c := Counter{Subject: d.Subject, Name: d.Name, Length: d.Length, Start: d.Start.UTC().Truncate(time.Microsecond)}
		counters[i] = c
		sums[c] += d.Add
		if c.Start.After(latest) {
			latest = c.Start
		}
	}
	unique := make([]Counter, 0, len(sums))
	for c := range sums {
		unique = append(unique, c)
	}
	slices.SortFunc(unique, compareCounters)
	var adds []CounterAdd
	read := make([]Counter, 0, 2*len(unique))
	for _, c := range unique {
		if n := sums[c]; n > 0 {
			adds = append(adds, CounterAdd{Counter: c, Add: n, ExpiresAt: c.Start.Add(2 * c.Length)})
		}
		prev := c
		prev.Start = c.Start.Add(-c.Length)
		read = append(read, c, prev)
	}
	prune := ks.pruneDue()
	var totals []int64
	err := ks.backend.Update(ctx, func(tx Tx) error {
		var err error
		if totals, err = tx.AddCounts(adds, read); err != nil {
			return err
		}
		if len(totals) != len(read) {
			return fmt.Errorf("the store answered %d window counts for %d", len(totals), len(read))
		}
		if prune {
			return tx.PruneCounts(latest)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("syncing rate windows: %w", err)
	}
	type pair struct{ count, previous int64 }
	byCounter := make(map[Counter]pair, len(unique))
	for i, c := range unique {
		byCounter[c] = pair{totals[2*i], totals[2*i+1]}
	}
	out := make([]WindowCount, len(deltas))
	for i, c := range counters {
		t := byCounter[c]
		out[i] = WindowCount{Subject: c.Subject, Name: c.Name, Start: c.Start, Length: c.Length, Count: t.count, Previous: t.previous}
	}
	return out, nil
}

// pruneDue reports whether this sync should also prune, at most once per
// pruneEvery per keystore.
func (ks *Keystore) pruneDue() bool {
	now := time.Now().UnixNano()
	last := ks.lastPrune.Load()
	return now-last >= int64(pruneEvery) && ks.lastPrune.CompareAndSwap(last, now)
}

// compareCounters orders counters by subject, name, length and start.
func compareCounters(a, b Counter) int {
	return cmp.Or(strings.Compare(a.Subject, b.Subject), strings.Compare(a.Name, b.Name),
		cmp.Compare(a.Length, b.Length), a.Start.Compare(b.Start))
}
