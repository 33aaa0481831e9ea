package limiter

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
)

// A credit state's word packs a generation (high bits) and the credits
// this node holds (low bits). Spending is a compare-and-swap on the word;
// a refund names the generation it was taken in and is dropped when the
// lease it came from was forgotten, returned or replaced since, so the
// node never spends more than the store granted.
const (
	genShift  = 40
	availMask = 1<<genShift - 1
	// usedGrain is how precisely the last use of a key's credits is kept.
	usedGrain = int64(100 * time.Millisecond)
)

func pack(gen uint32, avail int64) uint64 {
	return uint64(gen)<<genShift | uint64(min(max(avail, 0), availMask))
}

func genOf(w uint64) uint32  { return uint32(w >> genShift) }
func availOf(w uint64) int64 { return int64(w & availMask) }

// credits is this node's lease of one key's credits.
type credits struct {
	l     *Limiter
	keyID string
	word  atomic.Uint64

	refilling      atomic.Bool  // a lease is under way
	blockedUntil   atomic.Int64 // no lease is asked for before (unix ns)
	lowWater       atomic.Int64 // a lease is asked for below this
	lastUsed       atomic.Int64
	storeRemaining atomic.Int64 // the store's balance after the last lease
	nextRefill     atomic.Int64 // unix ns; 0: never refilled
	// debt is what requests cost beyond what the node held when they
	// were settled (a cost header above the reservation): it is paid
	// from the next lease of the same epoch, so the charge is exact
	// without the balance ever going below zero.
	debt atomic.Int64
	// waiting is the cost of the requests waiting for a lease: the
	// demand in hand, which the next lease covers.
	waiting atomic.Int64

	mu     sync.Mutex
	dead   bool                // forgotten or returned: look again
	lease  storage.CreditLease // the last lease, for its epoch
	leased bool
	failed bool // the last lease failed
	// empty: the store's last answer said the balance is spent. Requests
	// the node cannot cover are refused at once (429) until a refill is
	// due or a change notice (Forget) replaces this state; the store is
	// asked again in the background every EmptyRecheck, in case credits
	// came back unannounced (another node returning its lease).
	empty         bool
	wait          chan struct{} // closed when the lease under way ends
	blockedReason Reason
	want          int64   // the size of the last lease asked for
	rate          float64 // credits spent per second, smoothed
	grantedAt     int64
	availAfter    int64 // what the node held after the last lease
}

func (l *Limiter) newCredits(keyID string, now int64) *credits {
	c := &credits{l: l, keyID: keyID}
	c.lastUsed.Store(now)
	return c
}

// take spends cost from the local lease if it holds that much.
func (c *credits) take(cost int64, now int64) (uint32, bool) {
	for {
		w := c.word.Load()
		avail := availOf(w)
		if avail < cost {
			return 0, false
		}
		if c.word.CompareAndSwap(w, w-uint64(cost)) {
			if avail-cost < c.lowWater.Load() && !c.refilling.Load() && now >= c.blockedUntil.Load() {
				c.l.startRefill(c, 0, now)
			}
			if c.lastUsed.Load() < now-usedGrain {
				c.lastUsed.Store(now)
			}
			return genOf(w), true
		}
	}
}

// takeUpTo spends up to n, what the lease holds, and returns what it took.
func (c *credits) takeUpTo(n int64) int64 {
	for {
		w := c.word.Load()
		t := min(availOf(w), n)
		if t <= 0 {
			return 0
		}
		if c.word.CompareAndSwap(w, w-uint64(t)) {
			if availOf(w)-t < c.lowWater.Load() && !c.refilling.Load() {
				c.l.startRefill(c, 0, c.l.now())
			}
			return t
		}
	}
}

// refund gives n back to the lease it was taken from, if that is still the
// one held.
func (c *credits) refund(gen uint32, n int64) {
	if n <= 0 {
		return
	}
	for {
		w := c.word.Load()
		if genOf(w) != gen || availOf(w)+n > availMask {
			return
		}
		if c.word.CompareAndSwap(w, w+uint64(n)) {
			return
		}
	}
}

// remaining estimates the key's balance: the store's after the last lease
// plus what this node holds.
func (c *credits) remaining() int64 {
	return c.storeRemaining.Load() + availOf(c.word.Load())
}

func (l *Limiter) refuseCredits(d *Decision, c *credits, reason Reason, now int64) {
	d.Reason = reason
	d.Credits = true
	d.CreditsRemaining = 0
	switch reason {
	case ReasonCredits:
		if nr := c.nextRefill.Load(); nr > now {
			d.RetryAfter = time.Duration(nr - now)
		}
	case ReasonUnavailable:
		d.RetryAfter = l.opt.RetryBackoff
	}
}

// keyCredits returns the live credit state of keyID, making it.
func (l *Limiter) keyCredits(keyID string, now int64) *credits {
	for {
		s := l.subject(keyID)
		c := s.credits.Load()
		if c == nil {
			s.credits.CompareAndSwap(nil, l.newCredits(keyID, now))
			c = s.credits.Load()
		}
		if c != nil && !s.dead.Load() {
			return c
		}
	}
}

// takeSlow waits for a lease to cover q.Cost (at most maxWait), unless
// the store's last answer said the balance is spent: then it refuses at
// once.
func (l *Limiter) takeSlow(ctx context.Context, q *Query, now int64) (*credits, uint32, Reason) {
	var timeout <-chan time.Time
	var counted *credits // the state whose waiting counts this request
	defer func() {
		if counted != nil {
			counted.waiting.Add(-q.Cost)
		}
	}()
	for {
		c := l.keyCredits(q.KeyID, now)
		if gen, ok := c.take(q.Cost, now); ok {
			return c, gen, ReasonNone
		}
		c.mu.Lock()
		dead, reason := c.dead, c.blockedReason
		blocked := c.wait == nil && now < c.blockedUntil.Load()
		empty := c.empty && !c.refillDue(now)
		c.mu.Unlock()
		switch {
		case dead:
			continue
		case empty:
			if !c.refilling.Load() && now >= c.blockedUntil.Load() {
				l.startRefill(c, 0, now) // the recheck; nobody waits for it
			}
			return c, 0, ReasonCredits
		case blocked:
			return c, 0, reason
		}
		if counted != c {
			if counted != nil {
				counted.waiting.Add(-q.Cost)
			}
			c.waiting.Add(q.Cost)
			counted = c
		}
		ch := l.startRefill(c, q.Cost, now)
		if ch == nil {
			if l.closed.Load() {
				return c, 0, ReasonUnavailable
			}
			now = l.now()
			continue // blocked or forgotten meanwhile
		}
		if timeout == nil {
			timeout = l.clock.After(c.maxWait())
		}
		select {
		case <-ch:
			now = l.now()
		case <-ctx.Done():
			return c, 0, c.waitReason()
		case <-timeout:
			return c, 0, c.waitReason()
		}
	}
}

// maxWait is how long a request may wait for leases: MaxWait when the
// key's last lease failed (the store is failing: answer 503 soon), and
// LeaseTimeout while the store answers, as a cache miss waits for its
// lookup: a lease under way ends by then, granted or failed, so a slow
// but healthy store delays a request instead of refusing it.
func (c *credits) maxWait() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed {
		return c.l.opt.MaxWait
	}
	return c.l.opt.LeaseTimeout
}

// refillDue reports whether the key's next refill is due, so that the
// store would grant a new epoch's credits.
func (c *credits) refillDue(now int64) bool {
	nr := c.nextRefill.Load()
	return nr != 0 && now >= nr
}

// waitReason is why a request that waited in vain is refused: the store
// failing or not answering in time, or other requests having spent what
// came.
func (c *credits) waitReason() Reason {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed || c.wait != nil {
		return ReasonUnavailable
	}
	return ReasonCredits
}

// startRefill asks the store for a lease unless one is under way, and
// returns the channel closed when it ends (nil when none may start).
func (l *Limiter) startRefill(c *credits, need int64, now int64) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wait != nil {
		return c.wait
	}
	if c.dead || now < c.blockedUntil.Load() {
		return nil
	}
	l.bgMu.RLock()
	defer l.bgMu.RUnlock()
	if l.closed.Load() {
		return nil
	}
	ch := make(chan struct{})
	c.wait = ch
	c.refilling.Store(true)
	want := c.nextWant(need, now)
	gen := genOf(c.word.Load())
	l.wg.Add(1)
	go l.refill(c, ch, want, gen)
	return ch
}

// nextWant sizes the next lease: about LeaseSpan of the recent spend,
// within MinLease and MaxLease, at most a quarter of the store's balance
// (so that nodes share what is left), but never less than the demand in
// hand (need, and the requests waiting, up to MaxLease): a lease that
// leaves requests waiting makes them wait for another round trip.
func (c *credits) nextWant(need int64, now int64) int64 {
	o := &c.l.opt
	if c.grantedAt != 0 {
		spent := max(c.availAfter-availOf(c.word.Load()), 0)
		elapsed := max(now-c.grantedAt, int64(o.LeaseSpan/20))
		inst := float64(spent) / time.Duration(elapsed).Seconds()
		// A sample as long as LeaseSpan replaces the estimate; shorter
		// ones (a busy key's) move it half way.
		w := max(0.5, min(1, float64(elapsed)/float64(o.LeaseSpan)))
		if c.rate == 0 {
			w = 1
		}
		c.rate = (1-w)*c.rate + w*inst
	}
	want := int64(math.Ceil(c.rate * o.LeaseSpan.Seconds()))
	want = min(max(want, o.MinLease), o.MaxLease)
	if c.leased {
		want = min(want, max((c.storeRemaining.Load()+3)/4, 1))
	}
	want = max(want, need, min(c.waiting.Load()+c.debt.Load(), o.MaxLease))
	c.want = want
	return want
}

func (l *Limiter) refill(c *credits, ch chan struct{}, want int64, gen uint32) {
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(l.ctx, l.opt.LeaseTimeout)
	defer cancel()
	lease, err := l.store.LeaseCredits(ctx, c.keyID, want, l.clock.Now())
	now := l.now()
	giveBack := false
	c.mu.Lock()
	switch {
	case err != nil:
		if !c.failed && l.ctx.Err() == nil {
			l.log.Warn("credits could not be leased; spending what is held", zap.String("key", c.keyID), zap.Error(err))
		}
		c.failed = true
		c.blockedReason = ReasonUnavailable
		c.blockedUntil.Store(now + int64(l.opt.RetryBackoff))
	case c.dead || genOf(c.word.Load()) != gen:
		// Forgotten or returned while the lease was under way: the
		// store takes it back unless its epoch changed meanwhile.
		giveBack = lease.Granted > 0
	default:
		if c.failed {
			l.log.Info("credits leased again", zap.String("key", c.keyID))
		}
		c.failed = false
		c.apply(lease, now)
	}
	c.wait = nil
	c.refilling.Store(false)
	close(ch)
	c.mu.Unlock()
	if giveBack {
		if err := l.store.ReturnCredits(ctx, lease, lease.Granted); err != nil {
			l.log.Warn("credits of a forgotten lease could not be returned", zap.String("key", c.keyID), zap.Error(err))
		}
	}
}

// apply adds a lease to what the node holds; c.mu is held.
func (c *credits) apply(lease storage.CreditLease, now int64) {
	if c.leased && lease.Epoch != c.lease.Epoch {
		// A refill or an edit happened: what is held of the old epoch
		// is void, refunds to it are dropped, and so is its debt.
		c.debt.Store(0)
		c.word.Store(pack(genOf(c.word.Load())+1, lease.Granted))
	} else {
		granted := lease.Granted
		if d := c.debt.Load(); d > 0 {
			pay := min(d, granted)
			c.debt.Add(-pay)
			granted -= pay
		}
		for {
			w := c.word.Load()
			if c.word.CompareAndSwap(w, pack(genOf(w), availOf(w)+granted)) {
				break
			}
		}
	}
	c.lease, c.leased = lease, true
	c.storeRemaining.Store(max(lease.Remaining, 0))
	var next int64
	if !lease.NextRefill.IsZero() {
		next = lease.NextRefill.UnixNano()
	}
	c.nextRefill.Store(next)
	if lease.Remaining <= 0 {
		// Nothing more to lease until a refill or an edit (Forget).
		until := now + int64(c.l.opt.EmptyRecheck)
		if next != 0 && next < until {
			until = max(next, now)
		}
		c.blockedReason = ReasonCredits
		c.blockedUntil.Store(until)
		c.empty = true
	} else {
		c.blockedUntil.Store(0)
		c.empty = false
	}
	c.grantedAt = now
	c.availAfter = availOf(c.word.Load())
	c.lowWater.Store(max(c.want/2, 1))
}

// Forget drops the local lease of keyID without returning it: a change
// notice said its balance or policy changed, so the store's epoch moved
// and the lease is void. The next request leases afresh.
func (l *Limiter) Forget(keyID string) {
	v, ok := l.subjects.Load(keyID)
	if !ok {
		return
	}
	c := v.(*subject).credits.Swap(nil)
	if c == nil {
		return
	}
	c.mu.Lock()
	c.dead = true
	c.word.Store(pack(genOf(c.word.Load())+1, 0))
	c.mu.Unlock()
}

// giveBack returns c's unused credits to the store and drops c from s,
// when idle for LeaseIdle or when force is set.
func (l *Limiter) giveBack(ctx context.Context, s *subject, c *credits, force bool, now int64) {
	c.mu.Lock()
	if c.dead || !force && (c.wait != nil || now-c.lastUsed.Load() < int64(l.opt.LeaseIdle)) {
		c.mu.Unlock()
		return
	}
	c.dead = true
	s.credits.CompareAndSwap(c, nil)
	w := c.word.Swap(pack(genOf(c.word.Load())+1, 0))
	lease, leased := c.lease, c.leased
	c.mu.Unlock()
	if unused := availOf(w); leased && unused > 0 {
		ctx, cancel := context.WithTimeout(ctx, l.opt.LeaseTimeout)
		defer cancel()
		if err := l.store.ReturnCredits(ctx, lease, unused); err != nil {
			l.log.Warn("unused credits could not be returned", zap.String("key", c.keyID),
				zap.Int64("credits", unused), zap.Error(err))
		}
	}
}

// returnAll gives back every lease (Close).
func (l *Limiter) returnAll(ctx context.Context) {
	now := l.now()
	l.subjects.Range(func(_, v any) bool {
		s := v.(*subject)
		if c := s.credits.Load(); c != nil {
			l.giveBack(ctx, s, c, true, now)
		}
		return true
	})
}
