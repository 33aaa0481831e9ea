package limiter

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// benchLimiter is a limiter on the system clock whose key has one window
// and credits, warmed so that decisions take the fast path.
func benchLimiter(tb testing.TB, opt Options, keys int) (*Limiter, []*Query) {
	st := newStore()
	l := New(st, opt)
	tb.Cleanup(func() { _ = l.Close(context.Background()) })
	qs := make([]*Query, keys)
	for i := range qs {
		id := "key_bench" + strconv.Itoa(i)
		st.setBalance(id, balance{remaining: 1 << 50})
		qs[i] = &Query{KeyID: id, Credits: true, Cost: 1,
			KeyLimits: []storage.Window{{Name: "burst", Limit: 1 << 40, Length: time.Hour}}}
		d := l.Allow(context.Background(), qs[i])
		d.Reservation.Commit(1)
	}
	waitLeases(l)
	return l, qs
}

// The fast path allocates nothing.
func TestAllowAllocations(t *testing.T) {
	l, qs := benchLimiter(t, Options{MinLease: 1 << 30, MaxLease: 1 << 30}, 1)
	noPolicy := &Query{KeyID: "key_free"}
	window := &Query{KeyID: "key_w", AccountID: "acc_w",
		KeyLimits:     qs[0].KeyLimits,
		AccountLimits: []storage.Window{{Name: "day", Limit: 1 << 40, Length: 24 * time.Hour}}}
	l.Allow(ctx, window)
	for name, q := range map[string]*Query{"window+credits": qs[0], "none": noPolicy, "key+account windows": window} {
		if n := testing.AllocsPerRun(1000, func() {
			d := l.Allow(ctx, q)
			d.Reservation.Commit(1)
		}); n != 0 {
			t.Errorf("%s: Allow allocates %v times", name, n)
		}
	}
}

func BenchmarkAllowNoPolicy(b *testing.B) {
	l, _ := benchLimiter(b, Options{}, 1)
	q := &Query{KeyID: "key_free"}
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(ctx, q)
	}
}

func BenchmarkAllowWindow(b *testing.B) {
	l, qs := benchLimiter(b, Options{}, 1)
	q := &Query{KeyID: qs[0].KeyID, KeyLimits: qs[0].KeyLimits}
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(ctx, q)
	}
}

// One window and credits on a key: the case.
func BenchmarkAllowWindowCredits(b *testing.B) {
	l, qs := benchLimiter(b, Options{}, 1)
	b.ReportAllocs()
	for b.Loop() {
		d := l.Allow(ctx, qs[0])
		d.Reservation.Commit(1)
	}
}

// Every goroutine on the same key: the worst contention.
func BenchmarkAllowWindowCreditsParallelOneKey(b *testing.B) {
	l, qs := benchLimiter(b, Options{}, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := l.Allow(ctx, qs[0])
			d.Reservation.Commit(1)
		}
	})
}

// Goroutines over 1,024 keys.
func BenchmarkAllowWindowCreditsParallelManyKeys(b *testing.B) {
	l, qs := benchLimiter(b, Options{}, 1024)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 397
		for pb.Next() {
			i++
			d := l.Allow(ctx, qs[i%len(qs)])
			d.Reservation.Commit(1)
		}
	})
}

func BenchmarkAppendHeaders(b *testing.B) {
	l, qs := benchLimiter(b, Options{}, 1)
	d := l.Allow(ctx, qs[0])
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPolicy(buf[:0], &d)
		buf = AppendRateLimit(buf[:0], &d)
	}
}
