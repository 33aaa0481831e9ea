package storagetest

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Memory is a Backend that keeps its records in memory: the smallest
// complete backend, for tests and as an example of what a third-party
// backend implements. An Update works on a copy of the records and swaps
// it in on success, under one lock, so Updates are serializable.
type Memory struct {
	mu     sync.RWMutex
	data   *memoryData
	closed bool
}

type memoryData struct {
	accounts map[string]storage.Account
	keys     map[string]storage.Key
	tokens   map[string]storage.TokenRecord
	audit    []storage.AuditEvent // in id order
	credits  map[string]storage.CreditBalance
	counts   map[counterID]memoryCount
}

// counterID is a storage.Counter as a map key.
type counterID struct {
	subject, name string
	length        time.Duration
	start         int64 // Unix µs
}

func idOf(c storage.Counter) counterID {
	return counterID{c.Subject, c.Name, c.Length, c.Start.UnixMicro()}
}

type memoryCount struct {
	count     int64
	expiresAt time.Time
}

// NewMemory returns an empty in-memory backend.
func NewMemory() *Memory {
	return &Memory{data: &memoryData{accounts: map[string]storage.Account{}, keys: map[string]storage.Key{},
		tokens: map[string]storage.TokenRecord{}, credits: map[string]storage.CreditBalance{}, counts: map[counterID]memoryCount{}}}
}

func (d *memoryData) clone() *memoryData {
	return &memoryData{accounts: maps.Clone(d.accounts), keys: maps.Clone(d.keys), tokens: maps.Clone(d.tokens),
		audit: slices.Clone(d.audit), credits: maps.Clone(d.credits), counts: maps.Clone(d.counts)}
}

// Update implements storage.Backend.
func (m *Memory) Update(_ context.Context, fn func(storage.Tx) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.data.clone()
	if err := fn(d); err != nil {
		return err
	}
	m.data = d
	return nil
}

// View implements storage.Backend.
func (m *Memory) View(_ context.Context, fn func(storage.Tx) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(m.data)
}

// LookupToken implements storage.Backend.
func (m *Memory) LookupToken(_ context.Context, hash token.Hash) (*storage.Lookup, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, err := m.data.TokenByHash(hash)
	if err != nil {
		return nil, err
	}
	k := m.data.keys[t.KeyID]
	l := &storage.Lookup{TokenID: t.ID, ExpiresAt: t.ExpiresAt, KeyID: k.ID, KeyScopes: k.Scopes,
		KeyPolicy: k.Policy, Account: m.data.accounts[k.AccountID]}
	if b, ok := m.data.credits[k.ID]; ok {
		l.Credits = &b
	}
	return l, nil
}

// RecordUse implements storage.Backend.
func (m *Memory) RecordUse(_ context.Context, uses map[string]time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, at := range uses {
		t, ok := m.data.tokens[id]
		if ok && (t.LastUsedAt == nil || t.LastUsedAt.Before(at)) {
			t.LastUsedAt = &at
			m.data.tokens[id] = t
		}
	}
	return nil
}

// Close implements storage.Backend.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

func found[T any](m map[string]T, id string) (*T, error) {
	v, ok := m[id]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return &v, nil
}

// sorted returns at most limit values of m that keep accepts, in key
// order, after the key after.
func sorted[T any](m map[string]T, after string, limit int, keep func(*T) bool) []T {
	var out []T
	for _, id := range slices.Sorted(maps.Keys(m)) {
		if v := m[id]; id > after && keep(&v) {
			if len(out) == limit {
				break
			}
			out = append(out, v)
		}
	}
	return out
}

func (d *memoryData) Account(id string) (*storage.Account, error) { return found(d.accounts, id) }

func (d *memoryData) AccountByName(name string) (*storage.Account, error) {
	for _, a := range d.accounts {
		if a.Name == name {
			return &a, nil
		}
	}
	return nil, storage.ErrNotFound
}

func (d *memoryData) Accounts(after string, limit int) ([]storage.Account, error) {
	return sorted(d.accounts, after, limit, func(*storage.Account) bool { return true }), nil
}

func (d *memoryData) PutAccount(a *storage.Account) error {
	if other, err := d.AccountByName(a.Name); err == nil && other.ID != a.ID {
		return storage.ErrConflict
	}
	d.accounts[a.ID] = *a
	return nil
}

func (d *memoryData) DeleteAccount(id string) error { return remove(d.accounts, id) }

func (d *memoryData) Key(id string) (*storage.Key, error) { return found(d.keys, id) }

func (d *memoryData) Keys(q storage.KeyQuery) ([]storage.Key, error) {
	return sorted(d.keys, q.After, q.Limit, func(k *storage.Key) bool {
		for name, v := range q.Tags {
			if got, ok := k.Tags[name]; !ok || got != v {
				return false
			}
		}
		return q.AccountID == "" || k.AccountID == q.AccountID
	}), nil
}

func (d *memoryData) PutKey(k *storage.Key) error {
	c := *k
	c.Tokens, c.EffectiveScopes, c.Policy.Credits = nil, nil, nil
	d.keys[k.ID] = c
	return nil
}

func (d *memoryData) DeleteKey(id string) error { return remove(d.keys, id) }

func (d *memoryData) Token(id string) (*storage.TokenRecord, error) { return found(d.tokens, id) }

func (d *memoryData) TokenByHash(hash token.Hash) (*storage.TokenRecord, error) {
	for _, t := range d.tokens {
		if t.Hash == hash {
			return &t, nil
		}
	}
	return nil, storage.ErrNotFound
}

func (d *memoryData) Tokens(keyIDs ...string) ([]storage.TokenRecord, error) {
	return sorted(d.tokens, "", len(d.tokens), func(t *storage.TokenRecord) bool { return slices.Contains(keyIDs, t.KeyID) }), nil
}

func (d *memoryData) PutToken(t *storage.TokenRecord) error {
	if other, err := d.TokenByHash(t.Hash); err == nil && other.ID != t.ID {
		return storage.ErrConflict
	}
	d.tokens[t.ID] = *t
	return nil
}

func (d *memoryData) DeleteToken(id string) error { return remove(d.tokens, id) }

func (d *memoryData) AppendAudit(e *storage.AuditEvent) error {
	d.audit = append(d.audit, *e)
	slices.SortFunc(d.audit, func(a, b storage.AuditEvent) int { return strings.Compare(a.ID, b.ID) })
	return nil
}

func (d *memoryData) Audit(q storage.AuditQuery) ([]storage.AuditEvent, error) {
	var out []storage.AuditEvent
	for i := len(d.audit) - 1; i >= 0 && len(out) < q.Limit; i-- {
		e := d.audit[i]
		if (q.Before != "" && e.ID >= q.Before) || (q.Actor != "" && e.Actor != q.Actor) ||
			(q.Action != "" && e.Action != q.Action) || (q.Target != "" && e.Target != q.Target) ||
			(q.AccountID != "" && e.AccountID != q.AccountID) {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

func (d *memoryData) CreditBalance(keyID string) (*storage.CreditBalance, error) {
	return found(d.credits, keyID)
}

func (d *memoryData) CreditBalances(keyIDs ...string) ([]storage.CreditBalance, error) {
	var out []storage.CreditBalance
	for _, id := range keyIDs {
		if b, ok := d.credits[id]; ok {
			out = append(out, b)
		}
	}
	return out, nil
}

func (d *memoryData) PutCreditBalance(b *storage.CreditBalance) error {
	d.credits[b.KeyID] = *b
	return nil
}

func (d *memoryData) DeleteCreditBalance(keyID string) error {
	delete(d.credits, keyID)
	return nil
}

func (d *memoryData) AddCounts(adds []storage.CounterAdd, read []storage.Counter) ([]int64, error) {
	for _, a := range adds {
		id := idOf(a.Counter)
		c := d.counts[id]
		c.count += a.Add
		if a.ExpiresAt.After(c.expiresAt) {
			c.expiresAt = a.ExpiresAt
		}
		d.counts[id] = c
	}
	out := make([]int64, len(read))
	for i, c := range read {
		out[i] = d.counts[idOf(c)].count
	}
	return out, nil
}

func (d *memoryData) PruneCounts(before time.Time) error {
	maps.DeleteFunc(d.counts, func(_ counterID, c memoryCount) bool { return c.expiresAt.Before(before) })
	return nil
}

func remove[T any](m map[string]T, id string) error {
	if _, ok := m[id]; !ok {
		return storage.ErrNotFound
	}
	delete(m, id)
	return nil
}

// Interface guards
var (
	_ storage.Backend = (*Memory)(nil)
	_ storage.Tx      = (*memoryData)(nil)
)
