package cache

import (
	"context"
	"errors"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Change notices keep a cache current with other nodes' changes. When the
// listener that receives them fails, the ones sent until it is back are
// lost, and ttl alone would bound how long a revocation made on another
// node goes unseen. So while notices may be lost the cache serves a known
// token from itself only if the store vouched for it since the loss and
// less than UnheardTTL ago; otherwise it asks the store again. If the
// store cannot answer, it serves what it has, until ttl, as it does when
// the store is down: a node cut off from the store cannot learn of a
// revocation, and the design keeps cached tokens working then. Unknown
// tokens keep their negative entries: a stale one only refuses.

// NoticesLost tells the cache that change notices from other nodes may no
// longer arrive, such as when the listener's connection fails, or before
// it first connects. Calling it again changes nothing until NoticesResumed.
func (c *Cache[V]) NoticesLost() {
	c.unheard.CompareAndSwap(0, max(c.now.Load(), 1))
}

// NoticesResumed tells the cache that notices arrive again. Those sent
// meanwhile are lost, so it forgets every entry.
func (c *Cache[V]) NoticesResumed() {
	c.InvalidateAll()
	c.unheard.Store(0)
}

// heard reports whether the known token of e may be served without asking
// the store: always while notices are heard, else only if the store
// vouched for it after they were lost and less than UnheardTTL ago.
func (c *Cache[V]) heard(e *entry[V]) bool {
	since := c.unheard.Load()
	if since == 0 {
		return true
	}
	checked := e.checked.Load()
	return checked > since && c.now.Load()-checked < int64(c.cfg.UnheardTTL)
}

// recheck asks the store again about the token of e, which notices may
// have missed a change of; when the store cannot answer, it serves e.
func (c *Cache[V]) recheck(ctx context.Context, e *entry[V], key, check uint64, value string) (V, error) {
	v, err := c.load(ctx, key, check, token.Sum(value))
	if err == nil || !errors.Is(err, storage.ErrUnavailable) || !c.fresh(e) {
		return v, err
	}
	// Ask again after UnheardTTL, not on every request to a dead store.
	e.checked.Store(c.now.Load())
	c.used(e)
	return e.val, nil
}
