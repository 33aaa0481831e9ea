package limiter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// manualClock is a Clock the test moves; timers fire when it passes them.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []manualTimer
}

type manualTimer struct {
	at time.Time
	ch chan time.Time
}

func newClock() *manualClock {
	// 00:00:10 UTC: window periods start on whole multiples of their length.
	return &manualClock{now: time.Date(2026, 6, 1, 0, 0, 10, 0, time.UTC)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, manualTimer{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires the timers it passed.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// Timers is how many timers are waiting (a request waiting for a lease
// holds one).
func (c *manualClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

type wkey struct {
	subject, name string
	start         int64
}

type balance struct {
	remaining  int64
	epoch      int64
	amount     int64         // refill amount; 0: never refilled
	period     time.Duration // refill period
	nextRefill time.Time
}

// memStore is the shared store of the simulated nodes: window totals and
// credit balances, as the keystore keeps them.
type memStore struct {
	mu       sync.Mutex
	counts   map[wkey]int64
	balances map[string]*balance
	granted  int64 // credits granted in all leases
	returned int64 // credits taken back
	wants    []int64
	syncs    int
	leases   int // leases granted
	attempts int // lease calls, failed ones too
	down     bool
	// leaseGate, when set, is received from before a lease is answered.
	leaseGate chan struct{}
	// leasing, when set, is sent to when a lease call starts.
	leasing chan string
}

var errDown = errors.New("store unreachable")

func newStore() *memStore {
	return &memStore{counts: map[wkey]int64{}, balances: map[string]*balance{}}
}

func (m *memStore) setBalance(keyID string, b balance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.balances[keyID] = &b
}

func (m *memStore) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

func (m *memStore) count(subject, name string, start time.Time) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[wkey{subject, name, start.UnixNano()}]
}

func (m *memStore) SyncWindows(_ context.Context, deltas []storage.WindowDelta) ([]storage.WindowCount, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, errDown
	}
	m.syncs++
	for _, d := range deltas {
		m.counts[wkey{d.Subject, d.Name, d.Start.UnixNano()}] += d.Add
	}
	out := make([]storage.WindowCount, len(deltas))
	for i, d := range deltas {
		out[i] = storage.WindowCount{Subject: d.Subject, Name: d.Name, Start: d.Start,
			Count:    m.counts[wkey{d.Subject, d.Name, d.Start.UnixNano()}],
			Previous: m.counts[wkey{d.Subject, d.Name, d.Start.Add(-d.Length).UnixNano()}]}
	}
	return out, nil
}

func (m *memStore) LeaseCredits(ctx context.Context, keyID string, want int64, now time.Time) (storage.CreditLease, error) {
	if m.leasing != nil {
		m.leasing <- keyID
	}
	if m.leaseGate != nil {
		select {
		case <-m.leaseGate:
		case <-ctx.Done():
			return storage.CreditLease{}, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attempts++
	if m.down {
		return storage.CreditLease{}, errDown
	}
	m.leases++
	m.wants = append(m.wants, want)
	b := m.balances[keyID]
	if b == nil {
		return storage.CreditLease{}, errors.New("no such key")
	}
	for b.amount > 0 && !now.Before(b.nextRefill) {
		b.remaining = b.amount
		b.epoch++
		b.nextRefill = b.nextRefill.Add(b.period)
	}
	g := min(want, b.remaining)
	b.remaining -= g
	m.granted += g
	return storage.CreditLease{KeyID: keyID, Granted: g, Remaining: b.remaining, Epoch: b.epoch,
		NextRefill: b.nextRefill}, nil
}

func (m *memStore) ReturnCredits(_ context.Context, lease storage.CreditLease, unused int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errDown
	}
	b := m.balances[lease.KeyID]
	if b == nil || b.epoch != lease.Epoch {
		return nil
	}
	b.remaining += unused
	m.returned += unused
	return nil
}

func (m *memStore) stats() (granted, returned int64, leases int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.granted, m.returned, m.leases
}

func (m *memStore) remaining(keyID string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.balances[keyID].remaining
}

// newTestLimiter is a Limiter on the manual clock with no sync loop.
func newTestLimiter(t testing.TB, st Store, clk *manualClock, opt Options) *Limiter {
	opt.Clock = clk
	l := New(st, opt)
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// waitLeases waits until no lease is under way on l (refills run on their
// own goroutines).
func waitLeases(l *Limiter) {
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	l.wg.Wait()
}
