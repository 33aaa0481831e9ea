package limiter

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
)

// maxBatch bounds the deltas of one SyncWindows call (a PostgreSQL
// statement takes at most 65,535 parameters).
const maxBatch = 4096

// batch is one sync's deltas and where their totals go.
type batch struct {
	deltas []storage.WindowDelta
	refs   []ref
}

type ref struct {
	s     *subject
	w     *window
	start int64
	add   int64
	// ownPrev: the batch carries the previous period's own delta, whose
	// Count is newer than this one's Previous could be.
	ownPrev bool
}

func (b *batch) add(s *subject, w *window, sl *slot, ownPrev bool) {
	b.deltas = append(b.deltas, storage.WindowDelta{Subject: s.id, Name: w.name,
		Start: time.Unix(0, sl.start).UTC(), Length: time.Duration(w.length), Add: sl.pending})
	b.refs = append(b.refs, ref{s: s, w: w, start: sl.start, add: sl.pending, ownPrev: ownPrev})
	sl.inflight += sl.pending
	sl.pending = 0
}

// Sync shares the window counts admitted since the last sync and applies
// the totals of every window decided on since. The sync loop calls it;
// Close calls it once more. When the store fails the counts stay pending
// for the next sync and decisions go on with local counts.
func (l *Limiter) Sync(ctx context.Context) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	b := l.prepare(l.now())
	var first error
	for len(b.deltas) > 0 {
		n := min(len(b.deltas), maxBatch)
		part := batch{deltas: b.deltas[:n], refs: b.refs[:n]}
		b.deltas, b.refs = b.deltas[n:], b.refs[n:]
		counts, err := l.store.SyncWindows(ctx, part.deltas)
		if err == nil && len(counts) != n {
			err = fmt.Errorf("store answered %d window counts for %d deltas", len(counts), n)
		}
		if err != nil {
			err = fmt.Errorf("sync rate windows: %w", err)
			first = cmpErr(first, err)
		}
		l.apply(&part, counts, err)
	}
	l.noteStore(first)
	return first
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// prepare moves what is pending in every window touched since the last
// sync to in flight and makes the deltas: for each window its current
// period (even with nothing to add, to hear the other nodes' counts) and,
// first, its previous one when that has counts to send.
func (l *Limiter) prepare(now int64) *batch {
	l.dirtyMu.Lock()
	subs := l.dirty
	l.dirty = nil
	l.dirtyMu.Unlock()
	b := &batch{}
	for _, s := range subs {
		s.dirty.Store(false)
		s.mu.Lock()
		if s.dead.Load() {
			s.mu.Unlock()
			continue
		}
		for _, w := range s.windows {
			if !w.touched && w.cur.pending == 0 && w.prev.pending == 0 {
				continue
			}
			w.touched = false
			w.roll(now)
			ownPrev := w.prev.pending > 0
			if ownPrev {
				b.add(s, w, &w.prev, false)
			}
			b.add(s, w, &w.cur, ownPrev)
		}
		s.mu.Unlock()
	}
	return b
}

// apply sets the totals the store answered, or puts the counts back to
// pending when it failed.
func (l *Limiter) apply(b *batch, counts []storage.WindowCount, err error) {
	for i, r := range b.refs {
		r.s.mu.Lock()
		w := r.w
		var sl *slot
		switch r.start {
		case w.cur.start:
			sl = &w.cur
		case w.prev.start:
			sl = &w.prev
		}
		ok := err == nil
		if ok {
			c := &counts[i]
			ok = c.Subject == r.s.id && c.Name == w.name && c.Start.UnixNano() == r.start
			if !ok {
				l.log.Error("store answered window counts out of order", zap.String("subject", r.s.id),
					zap.String("window", w.name))
			}
		}
		switch {
		case !ok:
			if sl != nil {
				sl.inflight -= r.add
				sl.pending += r.add
			}
			l.touch(r.s)
		case sl != nil:
			c := &counts[i]
			sl.inflight -= r.add
			sl.global = c.Count
			if sl == &w.cur && !r.ownPrev && w.prev.start == r.start-w.length {
				w.prev.global = c.Previous
			}
		}
		r.s.mu.Unlock()
	}
}

// noteStore logs when sharing counts starts or stops failing.
func (l *Limiter) noteStore(err error) {
	if err != nil {
		if !l.storeDown.Swap(true) {
			l.log.Warn("rate-window counts cannot be shared; deciding on local counts", zap.Error(err))
		}
		return
	}
	if l.storeDown.Swap(false) {
		l.log.Info("rate-window counts shared again")
	}
}

// run is the sync loop.
func (l *Limiter) run() {
	defer l.wg.Done()
	last := l.clock.Now()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.clock.After(l.opt.SyncInterval):
		case <-l.kick:
			if wait := l.opt.MinSyncInterval - l.clock.Now().Sub(last); wait > 0 {
				select {
				case <-l.ctx.Done():
					return
				case <-l.clock.After(wait):
				}
			}
		}
		if l.sys != nil {
			l.sys.rebase()
		}
		last = l.clock.Now()
		ctx, cancel := context.WithTimeout(l.ctx, l.opt.SyncTimeout)
		_ = l.Sync(ctx) // logged; the counts stay pending
		now := last.UnixNano()
		if now-l.lastSweep.Load() >= int64(l.opt.SweepInterval) {
			l.lastSweep.Store(now)
			l.Sweep(ctx)
		}
		cancel()
	}
}

// Sweep evicts what is idle: window state two lengths of its longest
// window past its last use, and credit leases unused for LeaseIdle, whose
// unused credits go back to the store. The sync loop calls it every
// SweepInterval.
func (l *Limiter) Sweep(ctx context.Context) {
	now := l.now()
	var idle []*subject
	l.subjects.Range(func(k, v any) bool {
		s := v.(*subject)
		if c := s.credits.Load(); c != nil {
			if now-c.lastUsed.Load() >= int64(l.opt.LeaseIdle) {
				idle = append(idle, s)
			}
			return true
		}
		l.evict(s, now)
		return true
	})
	for _, s := range idle {
		if c := s.credits.Load(); c != nil {
			l.giveBack(ctx, s, c, false, now)
		}
		if s.credits.Load() == nil {
			l.evict(s, now)
		}
	}
}

// evict drops s when its windows are idle and it holds no credits.
func (l *Limiter) evict(s *subject, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead.Load() || !s.idle(now) {
		return
	}
	s.dead.Store(true)
	if s.credits.Load() != nil {
		// Credits came meanwhile: keep it (whoever made them saw it
		// alive, or looks again).
		s.dead.Store(false)
		return
	}
	if l.subjects.CompareAndDelete(s.id, s) {
		l.held.Add(-1)
	}
}
