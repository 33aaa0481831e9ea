package limiter

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

var ctx = context.Background()

func keyQuery(id string, limits ...storage.Window) *Query {
	return &Query{KeyID: id, KeyLimits: limits}
}

// One node never admits more than a window's limit, however many requests
// race for it.
func TestWindowOneNodeConcurrent(t *testing.T) {
	clk := newClock()
	l := newTestLimiter(t, newStore(), clk, Options{})
	q := keyQuery("key_a", storage.Window{Name: "burst", Limit: 20, Length: time.Second})
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if d := l.Allow(ctx, q); d.Allowed() {
					passed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := passed.Load(); got != 20 {
		t.Fatalf("admitted %d of 800 concurrent requests, want exactly the limit 20", got)
	}
	d := l.Allow(ctx, q)
	if d.Reason != ReasonRateLimited || d.Window != "burst" || d.WindowAccount {
		t.Fatalf("21st request: reason %v window %q account %v, want rate_limited by the key's burst", d.Reason, d.Window, d.WindowAccount)
	}
	ws := d.Windows()
	if len(ws) != 1 || ws[0].Remaining != 0 || ws[0].Limit != 20 {
		t.Fatalf("statuses %+v, want one with remaining 0 of 20", ws)
	}
	// 10 s into a 1 s period: the period ends, then the previous one (20)
	// must fade to 19: 1/20 of the next period.
	if want := time.Second + 50*time.Millisecond; d.RetryAfter != want {
		t.Fatalf("RetryAfter %v, want %v", d.RetryAfter, want)
	}
}

// The estimate weighs the previous period by what is left of it.
func TestWindowSliding(t *testing.T) {
	clk := newClock() // 10 s past the minute: a 10 s period starts
	l := newTestLimiter(t, newStore(), clk, Options{})
	q := keyQuery("key_a", storage.Window{Name: "w", Limit: 10, Length: 10 * time.Second})
	for i := range 10 {
		if d := l.Allow(ctx, q); !d.Allowed() {
			t.Fatalf("request %d refused in an empty window", i)
		}
	}
	clk.Advance(12500 * time.Millisecond) // 25% into the next period
	var passed int
	for range 5 {
		if d := l.Allow(ctx, q); d.Allowed() {
			passed++
		}
	}
	// 10 × 0.75 = 7.5, room while estimate + 1 ≤ 10: 7.5, 8.5 pass.
	if passed != 2 {
		t.Fatalf("admitted %d at 25%% into the next period, want 2", passed)
	}
	d := l.Allow(ctx, q)
	// Room again when 10 × (1 − e) + 2 ≤ 9: e = 0.3, at 3 s; now is 2.5 s.
	if d.Allowed() || d.RetryAfter != 500*time.Millisecond {
		t.Fatalf("allowed %v RetryAfter %v, want refused for 500ms", d.Allowed(), d.RetryAfter)
	}
	if ws := d.Windows()[0]; ws.Reset != 500*time.Millisecond || ws.Remaining != 0 {
		t.Fatalf("refusing window status %+v, want reset 500ms remaining 0", ws)
	}
	clk.Advance(500 * time.Millisecond)
	if d := l.Allow(ctx, q); !d.Allowed() {
		t.Fatal("refused at the RetryAfter it announced")
	}
}

// An account's windows are shared by its keys; a refused request counts in
// no window.
func TestWindowKeyAndAccount(t *testing.T) {
	clk := newClock()
	l := newTestLimiter(t, newStore(), clk, Options{})
	acct := []storage.Window{{Name: "burst", Limit: 8, Length: time.Minute}}
	qa := &Query{KeyID: "key_a", KeyLimits: []storage.Window{{Name: "burst", Limit: 5, Length: time.Minute}},
		AccountID: "acc_x", AccountLimits: acct}
	qb := &Query{KeyID: "key_b", AccountID: "acc_x", AccountLimits: acct}
	for range 7 {
		l.Allow(ctx, qa)
	}
	d := l.Allow(ctx, qa)
	if d.Reason != ReasonRateLimited || d.Window != "burst" || d.WindowAccount {
		t.Fatalf("key a after 7: %v %q account=%v, want refused by its own window", d.Reason, d.Window, d.WindowAccount)
	}
	ws := d.Windows()
	if len(ws) != 2 || ws[0].Account || !ws[1].Account || ws[1].Remaining != 3 {
		t.Fatalf("statuses %+v, want the key's then the account's with 3 left", ws)
	}
	var passed int
	for range 5 {
		if d = l.Allow(ctx, qb); d.Allowed() {
			passed++
		}
	}
	if passed != 3 || d.Reason != ReasonRateLimited || !d.WindowAccount {
		t.Fatalf("key b passed %d (last %v, account %v), want 3 then refused by the account's window", passed, d.Reason, d.WindowAccount)
	}
}

// A policy edit that changes a window's length starts it afresh; one that
// changes only its limit keeps the counts.
func TestWindowPolicyChange(t *testing.T) {
	clk := newClock()
	l := newTestLimiter(t, newStore(), clk, Options{})
	for range 5 {
		l.Allow(ctx, keyQuery("key_a", storage.Window{Name: "w", Limit: 5, Length: time.Minute}))
	}
	if d := l.Allow(ctx, keyQuery("key_a", storage.Window{Name: "w", Limit: 6, Length: time.Minute})); !d.Allowed() || d.Windows()[0].Remaining != 0 {
		t.Fatalf("raised limit: allowed %v, statuses %+v, want the 6th admitted with 0 left", d.Allowed(), d.Windows())
	}
	if d := l.Allow(ctx, keyQuery("key_a", storage.Window{Name: "w", Limit: 6, Length: time.Hour})); !d.Allowed() || d.Windows()[0].Remaining != 5 {
		t.Fatalf("new length: statuses %+v, want a fresh window", d.Windows())
	}
}

// discardStore answers syncs with the deltas themselves and keeps nothing,
// so that the heap measured is the limiter's.
type discardStore struct{ memStore }

func (*discardStore) SyncWindows(_ context.Context, deltas []storage.WindowDelta) ([]storage.WindowCount, error) {
	out := make([]storage.WindowCount, len(deltas))
	for i, d := range deltas {
		out[i] = storage.WindowCount{Subject: d.Subject, Name: d.Name, Start: d.Start, Count: d.Add}
	}
	return out, nil
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// State idle for two periods of its window is evicted, so a million
// distinct keys hold only what the last two periods used.
func TestWindowEviction(t *testing.T) {
	clk := newClock()
	l := newTestLimiter(t, &discardStore{}, clk, Options{})
	waves, perWave := 10, 100_000 // a million keys
	if raceEnabled || testing.Short() {
		perWave = 10_000
	}
	win := storage.Window{Name: "s", Limit: 10, Length: time.Second}
	q := keyQuery("", win)
	var heapEarly uint64
	for w := range waves {
		for i := range perWave {
			q.KeyID = "key_" + strconv.Itoa(w) + "_" + strconv.Itoa(i)
			l.Allow(ctx, q)
		}
		if err := l.Sync(ctx); err != nil { // the dirty list holds them too
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		l.Sweep(ctx)
		if got := l.Len(); got > perWave {
			t.Fatalf("after wave %d: %d subjects held, want at most the last period's %d", w, got, perWave)
		}
		if w == 1 {
			heapEarly = heapAlloc()
		}
	}
	if heapLate := heapAlloc(); heapLate > heapEarly+heapEarly/2+1<<20 {
		t.Fatalf("heap %d MB after %d keys, %d MB after %d: state is not freed",
			heapLate>>20, waves*perWave, heapEarly>>20, 2*perWave)
	}
	q.KeyID = "key_kept"
	l.Allow(ctx, q)
	clk.Advance(1500 * time.Millisecond)
	l.Sweep(ctx)
	if _, ok := l.subjects.Load("key_kept"); !ok {
		t.Fatal("a key used 1.5 periods ago was evicted; its previous period still counts")
	}
	clk.Advance(time.Second)
	l.Sweep(ctx)
	if got := l.Len(); got != 0 {
		t.Fatalf("%d subjects held after every window went idle for two periods, want 0", got)
	}
}
