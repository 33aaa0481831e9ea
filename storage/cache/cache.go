// Package cache is the verification cache in front of the keystore: a
// ristretto cache of verified tokens, positive and negative, that never
// serves a token after a change notice that concerns it, makes one store
// query for concurrent misses, and batches last-used times. It is generic
// over what it caches: a caller keeps its own precomputed values per
// credential.
package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Source is what the cache verifies against: the keystore.
type Source interface {
	// LookupToken returns the credential of the token with this hash, or
	// storage.ErrNotFound.
	LookupToken(ctx context.Context, hash token.Hash) (*storage.Credential, error)
	// RecordUse writes batched last-used times.
	RecordUse(ctx context.Context, uses map[string]time.Time) error
	// OnChange registers a hook called after every local change.
	OnChange(fn func(storage.Invalidation))
}

// Config sizes the cache and bounds how stale it may be.
type Config struct {
	// MaxEntries bounds the number of cached tokens, known and unknown.
	MaxEntries int64
	// TTL bounds how long a known token is served from the cache without
	// asking the store; it only matters when change notices are lost.
	TTL time.Duration
	// NegativeTTL is how long an unknown well-formed token is remembered.
	NegativeTTL time.Duration
	// UnheardTTL bounds how long a known token is served without asking
	// the store while change notices may be lost (see NoticesLost).
	UnheardTTL time.Duration
	// LookupTimeout bounds one store lookup.
	LookupTimeout time.Duration
	// ObserveLookup, when set, is told how long each store lookup took.
	ObserveLookup func(time.Duration) `json:"-"`
}

// Cache defaults.
const (
	DefaultMaxEntries    = 100_000
	DefaultTTL           = 5 * time.Minute
	DefaultNegativeTTL   = 30 * time.Second
	DefaultUnheardTTL    = 500 * time.Millisecond
	DefaultLookupTimeout = 2 * time.Second
)

// stripeCount is the number of generation counters invalidations bump. An
// invalidation also forgets entries that share its stripe: 1 in 4096.
const stripeCount = 4096

// Cache verifies tokens through a ristretto cache in front of a Source.
// V is what it keeps per known token: what decorate made of its credential.
//
// Ristretto's Set is asynchronous and a Del can race a Set, so entries are
// not trusted by presence alone. Every invalidation takes a new value of a
// logical clock and raises the generation of the stripes of the ids it
// names. A store read remembers the clock before it starts; its entry is
// served only while every stripe it depends on (its token's, key's and
// account's; a negative entry's hash's) is no newer than that read. So a read
// that began before an invalidation is never served after it, whatever the
// order in which ristretto applies Set and Del.
type Cache[V any] struct {
	src      Source
	decorate func(*storage.Credential) V
	cfg      Config
	entries  *ristretto.Cache[uint64, *entry[V]]
	group    singleflight.Group
	// seed hashes ids to stripes; keySeeds hash tokens to cache keys.
	seed     maphash.Seed
	keySeeds [2]maphash.Seed

	clock   atomic.Uint64
	flushed atomic.Uint64 // clock of the last InvalidateAll
	stripes [stripeCount]atomic.Uint64
	// unheard is the coarse time since which change notices may be lost,
	// 0 while they are heard; see NoticesLost.
	unheard atomic.Int64

	// now is a coarse wall clock (Unix nanoseconds) for entry expiry,
	// cheaper on the hit path than time.Now.
	now       atomic.Int64
	stopClock chan struct{}
	closeOnce sync.Once
	done      sync.WaitGroup

	uses useBatch[V]

	stats Stats
}

// Stats counts what the cache did; read it with Load on each field.
type Stats struct {
	Hits         atomic.Uint64
	Misses       atomic.Uint64
	StoreQueries atomic.Uint64
	StoreErrors  atomic.Uint64
	// UseFlushes and UseFlushErrors count the batched last_used_at writes.
	UseFlushes     atomic.Uint64
	UseFlushErrors atomic.Uint64
}

type entry[V any] struct {
	check    uint64 // the token's second cache-key hash
	known    bool   // false: the token is unknown
	val      V
	tokenID  string
	expires  int64 // Unix nanoseconds
	loadedAt uint64
	stripes  [3]uint16
	// checked is the coarse time when the store last vouched for the
	// entry, or last could not be asked about it.
	checked atomic.Int64

	// lastUsed (Unix nanoseconds, coarse) and dirty feed the batched
	// last_used_at writes; see uses.
	lastUsed atomic.Int64
	dirty    atomic.Bool
}

// clockTick is the resolution of the coarse clock, and so of TTLs.
const clockTick = 100 * time.Millisecond

// New returns a cache in front of src that keeps decorate(credential) for
// every known token. Zero fields of cfg take the defaults. It registers
// itself for src's change notices.
func New[V any](src Source, decorate func(*storage.Credential) V, cfg Config) (*Cache[V], error) {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.UnheardTTL <= 0 {
		cfg.UnheardTTL = DefaultUnheardTTL
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	entries, err := ristretto.NewCache(&ristretto.Config[uint64, *entry[V]]{
		NumCounters:        cfg.MaxEntries * 10,
		MaxCost:            cfg.MaxEntries,
		BufferItems:        256,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating token cache: %w", err)
	}
	c := &Cache[V]{src: src, decorate: decorate, cfg: cfg, entries: entries, seed: maphash.MakeSeed(),
		keySeeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, stopClock: make(chan struct{})}
	c.now.Store(time.Now().UnixNano())
	c.done.Go(c.runClock)
	c.done.Go(c.runFlusher)
	src.OnChange(c.Invalidate)
	return c, nil
}

// Stats returns the cache's counters.
func (c *Cache[V]) Stats() *Stats { return &c.stats }

// Verify returns what the cache keeps for token, storage.ErrNotFound when
// no such token exists, or another error (wrapping storage.ErrUnavailable
// when the store cannot answer) when it cannot tell. The caller checks the token's format first.
//
// Cache entries are found by two 64-bit keyed hashes of the token (128
// bits, seeds random per process): much cheaper than SHA-256, which is
// only computed on a miss, to ask the store.
func (c *Cache[V]) Verify(ctx context.Context, value string) (V, error) {
	key := maphash.String(c.keySeeds[0], value)
	check := maphash.String(c.keySeeds[1], value)
	if e, ok := c.entries.Get(key); ok && e.check == check && c.now.Load() < e.expires && c.fresh(e) {
		if !e.known {
			c.stats.Hits.Add(1)
			var zero V
			return zero, storage.ErrNotFound
		}
		if c.heard(e) {
			c.stats.Hits.Add(1)
			c.used(e)
			return e.val, nil
		}
		c.stats.Misses.Add(1)
		return c.recheck(ctx, e, key, check, value)
	}
	c.stats.Misses.Add(1)
	return c.load(ctx, key, check, token.Sum(value))
}

// load reads the token from the store, once for all concurrent misses. A
// read that an invalidation overtook is not used but read again: a request
// that arrives after a revocation must not share a read from before it.
func (c *Cache[V]) load(ctx context.Context, key, check uint64, hash token.Hash) (V, error) {
	var zero V
	for attempt := range maxReads {
		var e *entry[V]
		var err error
		if attempt < 2 {
			var v any
			v, err, _ = c.group.Do(string(hash[:]), func() (any, error) {
				// Detached: one caller's cancellation must not fail the others.
				return c.read(context.WithoutCancel(ctx), key, check, hash)
			})
			e, _ = v.(*entry[V])
		} else {
			e, err = c.read(ctx, key, check, hash)
		}
		if err != nil {
			return zero, err
		}
		if !c.fresh(e) {
			continue
		}
		if !e.known {
			return zero, storage.ErrNotFound
		}
		c.used(e)
		return e.val, nil
	}
	return zero, fmt.Errorf("%w: token changed during %d consecutive reads", storage.ErrUnavailable, maxReads)
}

// maxReads bounds the store reads of one lookup that invalidations overtake.
const maxReads = 6

// read asks the store and caches the answer unless an invalidation came
// in while it was asked.
func (c *Cache[V]) read(ctx context.Context, key, check uint64, hash token.Hash) (*entry[V], error) {
	e := &entry[V]{check: check, loadedAt: c.clock.Load()}
	e.checked.Store(c.now.Load())
	ctx, cancel := context.WithTimeout(ctx, c.cfg.LookupTimeout)
	defer cancel()
	c.stats.StoreQueries.Add(1)
	start := time.Now()
	cred, err := c.src.LookupToken(ctx, hash)
	took := time.Since(start)
	if c.cfg.ObserveLookup != nil {
		c.cfg.ObserveLookup(took)
	}
	ttl := c.cfg.TTL
	switch {
	case err == nil:
		e.known, e.val, e.tokenID = true, c.decorate(cred), cred.TokenID
		e.stripes = [3]uint16{c.stripe(cred.TokenID), c.stripe(cred.KeyID), c.stripe(cred.AccountID)}
	case errors.Is(err, storage.ErrNotFound):
		s := c.hashStripe(hash)
		e.stripes = [3]uint16{s, s, s}
		ttl = c.cfg.NegativeTTL
	default:
		c.stats.StoreErrors.Add(1)
		if !errors.Is(err, storage.ErrUnavailable) {
			err = fmt.Errorf("%w: %v", storage.ErrUnavailable, err)
		}
		return nil, err
	}
	// Expiry is checked against the coarse clock, not by ristretto, whose
	// TTL check reads the wall clock on every Get.
	e.expires = time.Now().Add(ttl).UnixNano()
	if c.fresh(e) {
		c.entries.Set(key, e, 1)
	}
	return e, nil
}

// fresh reports whether no invalidation that concerns e came after the
// store read that produced it began.
func (c *Cache[V]) fresh(e *entry[V]) bool {
	return c.flushed.Load() <= e.loadedAt &&
		c.stripes[e.stripes[0]].Load() <= e.loadedAt &&
		c.stripes[e.stripes[1]].Load() <= e.loadedAt &&
		c.stripes[e.stripes[2]].Load() <= e.loadedAt
}

func (c *Cache[V]) stripe(id string) uint16 {
	return uint16(maphash.String(c.seed, id) % stripeCount)
}

func (c *Cache[V]) hashStripe(h token.Hash) uint16 { return h.Bits() % stripeCount }

// Invalidate forgets everything inv names. When it returns, no request
// is served from a store read that began before the call.
func (c *Cache[V]) Invalidate(inv storage.Invalidation) {
	now := c.clock.Add(1)
	for _, id := range inv.Tokens {
		raise(&c.stripes[c.stripe(id)], now)
	}
	for _, id := range inv.Keys {
		raise(&c.stripes[c.stripe(id)], now)
	}
	for _, id := range inv.Accounts {
		raise(&c.stripes[c.stripe(id)], now)
	}
	for _, h := range inv.Hashes {
		raise(&c.stripes[c.hashStripe(h)], now)
	}
	for _, b := range inv.HashBits {
		raise(&c.stripes[b%stripeCount], now)
	}
}

// InvalidateAll forgets every entry, for when change notices may have
// been missed.
func (c *Cache[V]) InvalidateAll() {
	raise(&c.flushed, c.clock.Add(1))
	c.entries.Clear()
}

// raise sets g to v unless it already holds a later value.
func raise(g *atomic.Uint64, v uint64) {
	for {
		old := g.Load()
		if old >= v || g.CompareAndSwap(old, v) {
			return
		}
	}
}

func (c *Cache[V]) runClock() {
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			c.now.Store(now.UnixNano())
		case <-c.stopClock:
			return
		}
	}
}

// Close stops the cache's goroutines and writes the pending last-used
// times.
func (c *Cache[V]) Close() {
	c.closeOnce.Do(func() {
		close(c.stopClock)
		c.done.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.FlushUses(ctx) // failures are counted in stats
		c.entries.Close()
	})
}

// Wait blocks until the cache has applied the writes made so far; tests
// and benchmarks use it to observe ristretto's asynchronous Set.
func (c *Cache[V]) Wait() { c.entries.Wait() }
