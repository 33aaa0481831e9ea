package limiter

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/storage"
)

// subject is this node's state for one key or account: its rate windows
// and, for a key, its credits.
type subject struct {
	id string

	mu      sync.Mutex
	windows []*window // guarded by mu

	// dead is set (under mu) when a sweep evicts the subject: a request
	// holding it looks it up again.
	dead    atomic.Bool
	dirty   atomic.Bool // queued for the next sync
	credits atomic.Pointer[credits]
}

// slot counts one period of a window. The estimate of a period is
// global + inflight + pending.
type slot struct {
	start    int64 // unix nanoseconds, a multiple of the window's length
	global   int64 // the total across nodes at the last sync (ours included)
	inflight int64 // admitted here and sent in the sync under way
	pending  int64 // admitted here since
}

func (s *slot) count() int64 { return s.global + s.inflight + s.pending }

// window is a sliding-window counter: the current period and the one
// before it.
type window struct {
	name      string
	length    int64 // nanoseconds
	cur, prev slot
	touched   bool // decided on since the last sync
}

// roll moves the window to the period holding now. A clock that went back
// keeps counting in the current period.
func (w *window) roll(now int64) {
	start := now - now%w.length
	switch {
	case start == w.cur.start:
	case start == w.cur.start+w.length:
		w.prev, w.cur = w.cur, slot{start: start}
	case start > w.cur.start:
		w.prev, w.cur = slot{start: start - w.length}, slot{start: start}
	}
}

// estimate is previous × (1 − elapsed/length) + current.
func (w *window) estimate(now int64) float64 {
	weight := 1 - float64(now-w.cur.start)/float64(w.length)
	return float64(w.prev.count())*weight + float64(w.cur.count())
}

// wait is how long until the estimate leaves room for one more request.
// It works on offsets from the period's start: unix nanoseconds as floats
// would lose a quarter of a microsecond.
func (w *window) wait(limit int64, now int64) time.Duration {
	length := float64(w.length)
	if limit <= 0 {
		return time.Duration(w.length)
	}
	room := float64(limit - 1)
	p, c := float64(w.prev.count()), float64(w.cur.count())
	var at float64 // from the period's start
	if c <= room && p > 0 {
		// Room comes back within this period, as the previous one fades.
		at = (1 - (room-c)/p) * length
	} else {
		// In the next period this one is the previous: wait until it
		// has faded enough.
		at = length + (1-room/c)*length
	}
	return max(time.Duration(math.Round(at-float64(now-w.cur.start))), time.Nanosecond)
}

// find returns the window of s named like spec, making it, or making it
// again when its length changed.
func (s *subject) find(spec *storage.Window) *window {
	length := int64(spec.Length)
	for i, w := range s.windows {
		if w.name == spec.Name {
			if w.length != length {
				w = &window{name: spec.Name, length: length}
				s.windows[i] = w
			}
			return w
		}
	}
	w := &window{name: spec.Name, length: length}
	s.windows = append(s.windows, w)
	return w
}

// idle reports whether every window of s is two lengths past its last use,
// so that forgetting it changes no estimate.
func (s *subject) idle(now int64) bool {
	for _, w := range s.windows {
		if now < w.cur.start+2*w.length || w.cur.inflight != 0 || w.prev.inflight != 0 {
			return false
		}
	}
	return true
}

// epsilon absorbs the float error of an estimate, so that a request at
// the time wait announced finds room.
const epsilon = 1e-6

// entry is one window a request is decided against.
type entry struct {
	w     *window
	limit int64
	est   float64
}

// held is the subjects a decision locked and the windows it looked at.
type held struct {
	key, acct         *subject
	lockKey, lockAcct bool
	refused           bool // a window had no room
	n                 int
	inline            [inlineWindows]entry
	more              []entry
}

func (h *held) entries() []entry {
	if h.more != nil {
		return h.more
	}
	return h.inline[:h.n]
}

func (h *held) add(e entry) {
	if h.more == nil && h.n < inlineWindows {
		h.inline[h.n] = e
		h.n++
		return
	}
	if h.more == nil {
		h.more = append(make([]entry, 0, 2*inlineWindows), h.inline[:h.n]...)
	}
	h.more = append(h.more, e)
}

func (h *held) unlock() {
	if h.lockAcct {
		h.acct.mu.Unlock()
	}
	if h.lockKey {
		h.key.mu.Unlock()
	}
	h.lockKey, h.lockAcct = false, false
}

// subject returns the state of id, making it.
func (l *Limiter) subject(id string) *subject {
	if v, ok := l.subjects.Load(id); ok {
		return v.(*subject)
	}
	v, loaded := l.subjects.LoadOrStore(id, &subject{id: id})
	if !loaded {
		l.held.Add(1)
	}
	return v.(*subject)
}

// lock looks up and locks the subjects q's windows belong to (the key's,
// then the account's: always in that order), and with needCredits makes
// sure the key has credit state. It retries when a sweep evicted one.
func (l *Limiter) lock(h *held, q *Query, needCredits bool, now int64) {
	for {
		*h = held{}
		if len(q.KeyLimits) > 0 || needCredits {
			h.key = l.subject(q.KeyID)
		}
		if len(q.AccountLimits) > 0 && q.AccountID != "" {
			h.acct = l.subject(q.AccountID)
		}
		if len(q.KeyLimits) > 0 {
			h.key.mu.Lock()
			h.lockKey = true
		}
		if h.acct != nil && h.acct != h.key {
			h.acct.mu.Lock()
			h.lockAcct = true
		}
		if needCredits && h.key.credits.Load() == nil {
			h.key.credits.CompareAndSwap(nil, l.newCredits(q.KeyID, now))
		}
		if (h.key == nil || !h.key.dead.Load()) && (h.acct == nil || !h.acct.dead.Load()) {
			return
		}
		h.unlock()
	}
}

// checkWindows rolls and estimates every window q names and fills d's
// statuses. It returns false, with d saying why, when one has no room.
func (l *Limiter) checkWindows(d *Decision, h *held, q *Query, now int64) bool {
	ok := true
	if len(q.KeyLimits) > 0 {
		ok = l.checkSubject(d, h, h.key, q.KeyLimits, false, now)
	}
	if h.acct != nil {
		ok = l.checkSubject(d, h, h.acct, q.AccountLimits, true, now) && ok
	}
	if !ok {
		d.Reason = ReasonRateLimited
	}
	return ok
}

// checkSubject is checkWindows for the windows of one subject.
func (l *Limiter) checkSubject(d *Decision, h *held, s *subject, specs []storage.Window, account bool, now int64) bool {
	ok := true
	for i := range specs {
		spec := &specs[i]
		if spec.Length <= 0 {
			continue
		}
		w := s.find(spec)
		w.roll(now)
		w.touched = true
		est := w.estimate(now)
		ws := d.addWindow(WindowStatus{Name: spec.Name, Account: account, Limit: spec.Limit,
			Length: spec.Length, Remaining: remaining(spec.Limit, est),
			Reset: time.Duration(w.cur.start + w.length - now)})
		if est+1 > float64(spec.Limit)+epsilon {
			ws.Remaining = 0
			ws.Reset = w.wait(spec.Limit, now)
			// Name the window with room the latest.
			if !h.refused || ws.Reset > d.RetryAfter {
				d.RetryAfter = ws.Reset
				d.Window, d.WindowAccount = spec.Name, account
			}
			h.refused, ok = true, false
		}
		h.add(entry{w: w, limit: spec.Limit, est: est})
	}
	l.touch(s)
	return ok
}

// admitWindows counts the request in every window checkWindows looked at.
func (l *Limiter) admitWindows(d *Decision, h *held, now int64) {
	kick := false
	statuses := d.Windows()
	for i, e := range h.entries() {
		w := e.w
		w.cur.pending++
		if statuses[i].Remaining > 0 {
			statuses[i].Remaining--
		}
		// What this node admitted unseen, against the room left at the
		// last sync.
		headroom := float64(e.limit) - (e.est - float64(w.cur.pending-1))
		if float64(w.cur.pending) >= l.opt.SyncFraction*headroom {
			kick = true
		}
	}
	if kick {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

func remaining(limit int64, est float64) int64 {
	r := math.Floor(float64(limit) - est + epsilon)
	if r < 0 {
		return 0
	}
	return int64(r)
}

// touch queues s for the next sync.
func (l *Limiter) touch(s *subject) {
	if !s.dirty.Load() && s.dirty.CompareAndSwap(false, true) {
		l.dirtyMu.Lock()
		l.dirty = append(l.dirty, s)
		l.dirtyMu.Unlock()
	}
}
