package cache

import (
	"context"
	"sync"
	"time"
)

// UseFlushInterval is how often the last-used times of tokens are written:
// last_used_at lags real use by at most this plus the coarse clock's tick.
const UseFlushInterval = 5 * time.Second

// useBatch collects the cache entries used since the last flush. An entry
// joins it once per flush (its dirty flag), so the request path costs an
// atomic load or two.
type useBatch[V any] struct {
	mu      sync.Mutex
	entries []*entry[V]
	failed  map[string]time.Time // uses a failed flush must write next time
}

// used records a successful verification through e.
func (c *Cache[V]) used(e *entry[V]) {
	if now := c.now.Load(); e.lastUsed.Load() < now {
		e.lastUsed.Store(now)
	}
	if !e.dirty.Load() && e.dirty.CompareAndSwap(false, true) {
		c.uses.mu.Lock()
		c.uses.entries = append(c.uses.entries, e)
		c.uses.mu.Unlock()
	}
}

func (c *Cache[V]) runFlusher() {
	t := time.NewTicker(UseFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LookupTimeout)
			_ = c.FlushUses(ctx) // failures are counted and retried
			cancel()
		case <-c.stopClock:
			return
		}
	}
}

// FlushUses writes the last-used times collected so far, in one statement.
// Uses that cannot be written are kept for the next flush.
func (c *Cache[V]) FlushUses(ctx context.Context) error {
	c.uses.mu.Lock()
	entries, failed := c.uses.entries, c.uses.failed
	c.uses.entries, c.uses.failed = nil, nil
	c.uses.mu.Unlock()
	if len(entries) == 0 && len(failed) == 0 {
		return nil
	}
	uses := failed
	if uses == nil {
		uses = make(map[string]time.Time, len(entries))
	}
	for _, e := range entries {
		// Clear first: a use after this line joins the next batch.
		e.dirty.Store(false)
		at := time.Unix(0, e.lastUsed.Load())
		if prev, ok := uses[e.tokenID]; !ok || at.After(prev) {
			uses[e.tokenID] = at
		}
	}
	c.stats.UseFlushes.Add(1)
	if err := c.src.RecordUse(ctx, uses); err != nil {
		c.stats.UseFlushErrors.Add(1)
		c.uses.mu.Lock()
		if c.uses.failed == nil {
			c.uses.failed = uses
		} else {
			for id, at := range uses {
				if prev, ok := c.uses.failed[id]; !ok || at.After(prev) {
					c.uses.failed[id] = at
				}
			}
		}
		c.uses.mu.Unlock()
		return err
	}
	return nil
}
