// Package limiter is the node-local engine behind usage policies: it decides
// on each request whether a key's and its account's rate windows have room
// and whether the key's credits cover the request, without a store round
// trip per request.
//
// Rate windows are sliding-window counters (previous × (1 − elapsed/length)
// + current). Each node counts what it admits locally and shares the counts
// through the store in one batch per sync interval (Store.SyncWindows), so
// a node's view of a window is the total across nodes at its last sync plus
// what it admitted since. Nodes can therefore admit a little more than the
// limit together; the bound is
//
//	excess ≤ 2 · λ · (T + d)
//
// per window, where λ is the request rate of the window's subject summed
// over all N nodes (requests offered, admitted or not), T the sync interval
// and d the store's round trip. With the load spread evenly that is
// 2·(λ/N)·(T+d) per node, N of them. Reasoning: a node only admits past the
// limit while it has not seen the admissions that filled the window; those
// reach the store at their nodes' next sync (≤ T + d) and this node at its
// own next sync (≤ T + d later), so each node admits blindly for at most
// 2(T + d) after the window filled. A node's own admissions are always in its
// view, so one node alone never over-admits, however concurrent its
// requests. Early syncs (Options.SyncFraction) shorten T when a window nears
// its limit, so the figure is an upper bound. For the case (3 nodes,
// 600/min offered at 10/s, T = 250 ms, d ≈ 1 ms) it is 5.02: at most 605
// admitted in a minute window. The bound holds on the counter's estimate,
// hence on every window-aligned period; the sliding estimate itself assumes
// the previous window's admissions were spread evenly.
//
// While the store is unreachable windows fail open to local counts: each
// node keeps deciding with the last totals it heard plus its own admissions,
// so N nodes may together admit up to N times a limit until the store
// answers again; the unsynced counts are sent when it does.
//
// Credits are never over-spent: a node spends only from leases the store
// granted atomically (Store.LeaseCredits) and returns what it did not use
// (Store.ReturnCredits); a crashed node under-spends by at most what it
// held. With the store down a node spends what it holds, then refuses with
// ReasonUnavailable (503), distinct from ReasonCredits (429).
package limiter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
)

// Store is what the limiter needs of the keystore: batched window counts
// and atomic credit leases.
type Store interface {
	// SyncWindows adds the deltas and returns, for each delta, the total of
	// its window (Count) and of the window before it (Previous) across
	// all nodes, in the order of the deltas.
	SyncWindows(ctx context.Context, deltas []storage.WindowDelta) ([]storage.WindowCount, error)
	// LeaseCredits takes up to want credits from the key's balance after
	// applying a due refill; Granted may be less than want, 0 when empty.
	LeaseCredits(ctx context.Context, keyID string, want int64, now time.Time) (storage.CreditLease, error)
	// ReturnCredits gives back unused credits of a lease unless the key's
	// epoch changed since.
	ReturnCredits(ctx context.Context, lease storage.CreditLease, unused int64) error
}

// Clock tells the time and waits; tests inject a manual one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// systemClock is the default Clock. Reading the wall clock (time.Now)
// costs about 130 ns on the machines measured, the monotonic clock about
// 35, so it reads the wall clock once and adds the monotonic time elapsed
// since; the sync loop takes a fresh reading every iteration, so a step of
// the wall clock shows within one sync interval.
type systemClock struct {
	base atomic.Pointer[clockBase]
}

// clockBase is a wall clock reading and its unix nanoseconds.
type clockBase struct {
	at   time.Time
	unix int64
}

func newSystemClock() *systemClock {
	c := &systemClock{}
	c.rebase()
	return c
}

func (c *systemClock) rebase() {
	now := time.Now()
	c.base.Store(&clockBase{at: now, unix: now.UnixNano()})
}

func (c *systemClock) Now() time.Time {
	b := c.base.Load()
	return b.at.Add(time.Since(b.at))
}

// unixNano is Now().UnixNano() without making a time.Time.
func (c *systemClock) unixNano() int64 {
	b := c.base.Load()
	return b.unix + int64(time.Since(b.at))
}

func (c *systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options tune a Limiter; the zero value of a field takes its default.
type Options struct {
	// Clock defaults to the system clock.
	Clock Clock
	// SyncInterval is how often window counts are shared (T in the
	// bound; default 250 ms).
	SyncInterval time.Duration
	// SyncFraction triggers an early sync when a window's unsynced count
	// passes this fraction of its headroom at the last sync (default 0.25).
	SyncFraction float64
	// MinSyncInterval spaces early syncs (default 20 ms).
	MinSyncInterval time.Duration
	// SyncTimeout bounds one SyncWindows call (default 2 s).
	SyncTimeout time.Duration
	// SweepInterval is how often idle state is evicted (default 5 s).
	// Window state idle for two lengths of its longest window goes.
	SweepInterval time.Duration
	// LeaseSpan is how much spend a credit lease aims to cover (default
	// 1 s); MinLease and MaxLease bound a lease (defaults 1 and 10,000).
	LeaseSpan time.Duration
	MinLease  int64
	MaxLease  int64
	// MaxWait bounds how long a request whose key's local credits are
	// spent waits for a lease while the store is failing, that is when
	// the key's last lease failed (default 50 ms). While the store
	// answers, a request waits for the lease under way, at most
	// LeaseTimeout, as a cache miss waits for its lookup; a key the store
	// said is spent is refused at once. The request's context may cut
	// either shorter.
	MaxWait time.Duration
	// LeaseIdle returns a key's unused credits after it has not been used
	// for this long (default 30 s).
	LeaseIdle time.Duration
	// EmptyRecheck is how long a key the store reported empty is refused
	// without asking again (default 1 s; a change notice, Forget, ends it).
	EmptyRecheck time.Duration
	// RetryBackoff is how long after a failed lease the store is not
	// asked again for that key (default 1 s).
	RetryBackoff time.Duration
	// LeaseTimeout bounds one LeaseCredits or ReturnCredits call
	// (default 2 s).
	LeaseTimeout time.Duration
	// Logger defaults to zap.NewNop().
	Logger *zap.Logger
}

func (o *Options) defaults() {
	if o.Clock == nil {
		o.Clock = newSystemClock()
	}
	setDur(&o.SyncInterval, 250*time.Millisecond)
	if o.SyncFraction <= 0 {
		o.SyncFraction = 0.25
	}
	setDur(&o.MinSyncInterval, 20*time.Millisecond)
	setDur(&o.SyncTimeout, 2*time.Second)
	setDur(&o.SweepInterval, 5*time.Second)
	setDur(&o.LeaseSpan, time.Second)
	if o.MinLease <= 0 {
		o.MinLease = 1
	}
	if o.MaxLease < o.MinLease {
		o.MaxLease = max(10000, o.MinLease)
	}
	setDur(&o.MaxWait, 50*time.Millisecond)
	setDur(&o.LeaseIdle, 30*time.Second)
	setDur(&o.EmptyRecheck, time.Second)
	setDur(&o.RetryBackoff, time.Second)
	setDur(&o.LeaseTimeout, 2*time.Second)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Limiter decides requests against rate windows and credits. It is safe
// for concurrent use. Create it with New, run its sync loop with Start and
// stop it with Close.
type Limiter struct {
	store Store
	clock Clock
	sys   *systemClock // clock, when it is the default one
	opt   Options
	log   *zap.Logger

	subjects sync.Map // subject id -> *subject
	held     atomic.Int64

	dirtyMu sync.Mutex
	dirty   []*subject // subjects touched since the last sync

	syncMu    sync.Mutex // one sync at a time
	lastSweep atomic.Int64
	storeDown atomic.Bool // the last sync failed (logged once)
	kick      chan struct{}

	ctx     context.Context // background calls; cancelled by Close
	cancel  context.CancelFunc
	bgMu    sync.RWMutex   // orders wg.Add before Close's wg.Wait
	wg      sync.WaitGroup // the sync loop and credit refills
	closing sync.Once
	closed  atomic.Bool
}

// New returns a Limiter over store. Its sync loop runs once Start is
// called; credit leases are taken on demand either way.
func New(store Store, opt Options) *Limiter {
	opt.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Limiter{store: store, clock: opt.Clock, opt: opt, log: opt.Logger,
		kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	l.sys, _ = opt.Clock.(*systemClock)
	l.lastSweep.Store(l.now())
	return l
}

// now is the clock's time in unix nanoseconds.
func (l *Limiter) now() int64 {
	if l.sys != nil {
		return l.sys.unixNano()
	}
	return l.clock.Now().UnixNano()
}

// Query is what one request asks of the limiter. The slices are read, never
// kept or changed, so the caller may pass its cached policy's.
type Query struct {
	// KeyID and KeyLimits are the key's id and rate windows.
	KeyID     string
	KeyLimits []storage.Window
	// AccountID and AccountLimits are the windows shared by the
	// account's keys; without an AccountID they are not applied.
	AccountID     string
	AccountLimits []storage.Window
	// Credits says the key has a credit balance (a non-nil
	// storage.Credits); Cost is what the request reserves from it. Cost 0
	// reserves and checks nothing: the route is free.
	Credits bool
	Cost    int64
}

// Reason is why a request was refused, or ReasonNone.
type Reason uint8

const (
	// ReasonNone: the request is allowed.
	ReasonNone Reason = iota
	// ReasonRateLimited: a rate window of the key or its account is full
	// (429 rate_limited); Decision.Window names it.
	ReasonRateLimited
	// ReasonCredits: the key's credits are spent (429 usage_exceeded).
	ReasonCredits
	// ReasonUnavailable: the key's local credits are spent and the store
	// failed to lease more, or did not answer within LeaseTimeout (503
	// unavailable).
	ReasonUnavailable
)

// String names the reason as the answers' error codes do.
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "allowed"
	case ReasonRateLimited:
		return "rate_limited"
	case ReasonCredits:
		return "usage_exceeded"
	case ReasonUnavailable:
		return "unavailable"
	}
	return "unknown"
}

// WindowStatus is one applicable window as a decision left it, for the
// RateLimit header fields.
type WindowStatus struct {
	Name string
	// Account marks a window of the key's account (shared by its keys).
	Account bool
	Limit   int64
	Length  time.Duration
	// Remaining is what the window still admits after this request.
	Remaining int64
	// Reset is when the window's current period ends, or, for a window
	// that refused the request, when it has room again.
	Reset time.Duration
}

const inlineWindows = 4

// Decision is the outcome of Allow.
type Decision struct {
	// Reason is ReasonNone when the request may pass.
	Reason Reason
	// Window and WindowAccount name the window that refused the request
	// (the one with room the latest) when Reason is ReasonRateLimited.
	Window        string
	WindowAccount bool
	// RetryAfter is when to try again; 0 when there is nothing to say
	// (credits that are never refilled).
	RetryAfter time.Duration
	// Credits says the key has a credit balance; CreditsRemaining
	// estimates it after this request: the store's balance at the last
	// lease plus what this node holds (other nodes' leases are not known).
	Credits          bool
	CreditsRemaining int64
	// Reservation holds the credits reserved for an allowed request:
	// settle it with Commit or Cancel once the upstream answered.
	Reservation Reservation

	n      int
	inline [inlineWindows]WindowStatus
	more   []WindowStatus
}

// Allowed reports whether the request may pass.
func (d *Decision) Allowed() bool { return d.Reason == ReasonNone }

// Windows returns the applicable windows, the key's then the account's.
func (d *Decision) Windows() []WindowStatus {
	if d.more != nil {
		return d.more
	}
	return d.inline[:d.n]
}

func (d *Decision) addWindow(ws WindowStatus) *WindowStatus {
	if d.more == nil && d.n < inlineWindows {
		d.inline[d.n] = ws
		d.n++
		return &d.inline[d.n-1]
	}
	if d.more == nil {
		d.more = append(make([]WindowStatus, 0, 2*inlineWindows), d.inline[:d.n]...)
	}
	d.more = append(d.more, ws)
	return &d.more[len(d.more)-1]
}

func (d *Decision) resetWindows() {
	d.n = 0
	d.more = nil
}

// Allow decides one request: it passes only if every window of the key and
// of its account has room and the key's credits cover q.Cost. When it
// passes, every window counts it and the cost is reserved in
// d.Reservation. When the key's local credits are spent, Allow waits for a
// lease (see Options.MaxWait) or until ctx ends.
func (l *Limiter) Allow(ctx context.Context, q *Query) (d Decision) {
	credits := q.Credits && q.Cost > 0
	if len(q.KeyLimits) == 0 && len(q.AccountLimits) == 0 && !credits {
		return d
	}
	now := l.now()
	var h held
	l.lock(&h, q, credits, now)
	if !l.checkWindows(&d, &h, q, now) {
		h.unlock()
		return d
	}
	if !credits {
		l.admitWindows(&d, &h, now)
		h.unlock()
		return d
	}
	// Forget may have dropped the credits since lock made them.
	if c := h.key.credits.Load(); c != nil {
		if gen, ok := c.take(q.Cost, now); ok {
			l.admitWindows(&d, &h, now)
			h.unlock()
			l.reserved(&d, c, gen, q.Cost)
			return d
		}
	}
	h.unlock()
	c, gen, reason := l.takeSlow(ctx, q, now)
	if reason != ReasonNone {
		l.refuseCredits(&d, c, reason, now)
		return d
	}
	// The windows may have filled while this request waited.
	now = l.now()
	l.lock(&h, q, false, now)
	d.resetWindows()
	if !l.checkWindows(&d, &h, q, now) {
		h.unlock()
		c.refund(gen, q.Cost)
		return d
	}
	l.admitWindows(&d, &h, now)
	h.unlock()
	l.reserved(&d, c, gen, q.Cost)
	return d
}

// Len is the number of subjects (keys and accounts) the limiter holds state
// for.
func (l *Limiter) Len() int { return int(l.held.Load()) }

// Start runs the sync loop: window counts are shared every SyncInterval (or
// earlier when a window nears its limit) and idle state is evicted every
// SweepInterval.
func (l *Limiter) Start() {
	l.bgMu.RLock()
	defer l.bgMu.RUnlock()
	if l.closed.Load() {
		return
	}
	l.wg.Add(1)
	go l.run()
}

// Close stops the sync loop, sends the unsynced window counts and returns
// every unused credit lease, within ctx.
func (l *Limiter) Close(ctx context.Context) error {
	var err error
	l.closing.Do(func() {
		l.bgMu.Lock()
		l.closed.Store(true)
		l.bgMu.Unlock()
		l.cancel()
		l.wg.Wait()
		err = l.Sync(ctx)
		l.returnAll(ctx)
	})
	return err
}
