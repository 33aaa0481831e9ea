package bolt

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/storage"
)

// FormatVersion is the version of the on-disk records this code writes,
// kept in the meta bucket. Files without one were written by Keygate
// before records were versioned (version 0) and are migrated on open.
// Version 2 added usage policies to accounts and keys (fields a version 1
// record lacks, read as none) and the credits and window-count buckets;
// a version 1 file opens as it is. A Keygate that reads only up to
// version 1 refuses a version 2 file rather than drop its policies.
const FormatVersion = 2

// Buckets of the file store. Index buckets map "<parent>\x00<child>" to
// nothing, so a cursor seek lists a parent's children in id order.
var (
	bucketMeta         = []byte("meta")          // "format_version" → decimal
	bucketAccounts     = []byte("accounts")      // id → accountRecord
	bucketAccountNames = []byte("account_names") // name → id
	bucketKeys         = []byte("keys")          // id → keyRecord
	bucketAccountKeys  = []byte("account_keys")  // account \x00 key → ""
	bucketTokens       = []byte("tokens")        // id → tokenRecord
	bucketTokenHashes  = []byte("token_hashes")  // SHA-256 → token id
	bucketKeyTokens    = []byte("key_tokens")    // key \x00 token → ""
	bucketAudit        = []byte("audit")         // id → auditRecord
	bucketCredits      = []byte("credits")       // key id → creditRecord
	bucketCounts       = []byte("window_counts") // counterKey → countValue
	bucketCountExpiry  = []byte("window_expiry") // expiry (8 bytes) counterKey → ""

	recordBuckets  = [][]byte{bucketAccounts, bucketKeys, bucketTokens, bucketAudit, bucketCredits}
	indexBuckets   = [][]byte{bucketAccountNames, bucketAccountKeys, bucketTokenHashes, bucketKeyTokens}
	counterBuckets = [][]byte{bucketCounts, bucketCountExpiry}
	keyVersion     = []byte("format_version")
)

// The on-disk records, version 2. They are this package's own types, so
// the API's and the export's shapes can change without touching files.
type (
	accountRecord struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		Kind      string    `json:"kind"`
		Team      string    `json:"team"`
		Scopes    []string  `json:"scopes"`
		Disabled  bool      `json:"disabled"`
		CreatedAt time.Time `json:"created_at"`
		policyRecord
	}
	// policyRecord is a usage policy, without credits (version 2).
	policyRecord struct {
		Limits     []windowRecord `json:"limits,omitempty"`
		AllowedIPs []netip.Prefix `json:"allowed_ips,omitempty"`
	}
	windowRecord struct {
		Name   string        `json:"name"`
		Limit  int64         `json:"limit"`
		Length time.Duration `json:"length_ns"`
	}
	// creditRecord is a key's credits (version 2).
	creditRecord struct {
		Key        string        `json:"key"`
		Remaining  int64         `json:"remaining"`
		Refill     *refillRecord `json:"refill,omitempty"`
		NextRefill *time.Time    `json:"next_refill,omitempty"`
		Epoch      int64         `json:"epoch"`
	}
	refillRecord struct {
		Amount   int64  `json:"amount"`
		Interval string `json:"interval"`
		Day      int    `json:"day"`
	}
	keyRecord struct {
		ID          string            `json:"id"`
		Account     string            `json:"account"`
		Name        string            `json:"name"`
		Description string            `json:"description"`
		Tags        map[string]string `json:"tags"`
		Scopes      []string          `json:"scopes"` // null: the account's, live
		CreatedAt   time.Time         `json:"created_at"`
		CreatedBy   string            `json:"created_by"`
		policyRecord
	}
	tokenRecord struct {
		ID          string            `json:"id"`
		Key         string            `json:"key"`
		Name        string            `json:"name"`
		Description string            `json:"description"`
		Tags        map[string]string `json:"tags"`
		Hint        string            `json:"hint"`
		ExpiresAt   *time.Time        `json:"expires_at"`
		CreatedAt   time.Time         `json:"created_at"`
		LastUsedAt  *time.Time        `json:"last_used_at"`
		RotatedTo   string            `json:"rotated_to,omitempty"`
		RotatedAt   *time.Time        `json:"rotated_at,omitempty"`
		Hash        []byte            `json:"hash"`
	}
	auditRecord struct {
		ID      string         `json:"id"`
		At      time.Time      `json:"at"`
		Actor   string         `json:"actor"`
		Action  string         `json:"action"`
		Target  string         `json:"target"`
		Account string         `json:"account"`
		Details map[string]any `json:"details"`
	}
)

func (r *accountRecord) account() *storage.Account {
	return &storage.Account{ID: r.ID, Name: r.Name, Kind: r.Kind, Team: r.Team, Scopes: r.Scopes,
		Disabled: r.Disabled, CreatedAt: r.CreatedAt, Policy: r.policy()}
}

func fromAccount(a *storage.Account) *accountRecord {
	return &accountRecord{ID: a.ID, Name: a.Name, Kind: a.Kind, Team: a.Team, Scopes: a.Scopes,
		Disabled: a.Disabled, CreatedAt: a.CreatedAt, policyRecord: fromPolicy(&a.Policy)}
}

func (r *keyRecord) key() *storage.Key {
	return &storage.Key{ID: r.ID, AccountID: r.Account, Name: r.Name, Description: r.Description,
		Tags: r.Tags, Scopes: r.Scopes, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, Policy: r.policy()}
}

func fromKey(k *storage.Key) *keyRecord {
	return &keyRecord{ID: k.ID, Account: k.AccountID, Name: k.Name, Description: k.Description,
		Tags: k.Tags, Scopes: k.Scopes, CreatedAt: k.CreatedAt, CreatedBy: k.CreatedBy, policyRecord: fromPolicy(&k.Policy)}
}

func (r *policyRecord) policy() storage.Policy {
	var p storage.Policy
	for _, w := range r.Limits {
		p.Limits = append(p.Limits, storage.Window{Name: w.Name, Limit: w.Limit, Length: w.Length})
	}
	p.AllowedIPs = r.AllowedIPs
	return p
}

func fromPolicy(p *storage.Policy) policyRecord {
	var r policyRecord
	for _, w := range p.Limits {
		r.Limits = append(r.Limits, windowRecord{Name: w.Name, Limit: w.Limit, Length: w.Length})
	}
	if len(p.AllowedIPs) > 0 {
		r.AllowedIPs = p.AllowedIPs
	}
	return r
}

func (r *creditRecord) balance() *storage.CreditBalance {
	b := &storage.CreditBalance{KeyID: r.Key, Remaining: r.Remaining, Epoch: r.Epoch}
	if r.Refill != nil {
		b.Refill = &storage.Refill{Amount: r.Refill.Amount, Interval: r.Refill.Interval, Day: r.Refill.Day}
	}
	if r.NextRefill != nil {
		b.NextRefill = r.NextRefill.UTC()
	}
	return b
}

func fromBalance(b *storage.CreditBalance) *creditRecord {
	r := &creditRecord{Key: b.KeyID, Remaining: b.Remaining, Epoch: b.Epoch}
	if b.Refill != nil {
		r.Refill = &refillRecord{Amount: b.Refill.Amount, Interval: b.Refill.Interval, Day: b.Refill.Day}
	}
	if !b.NextRefill.IsZero() {
		next := b.NextRefill
		r.NextRefill = &next
	}
	return r
}

func (r *tokenRecord) token() *storage.TokenRecord {
	t := &storage.TokenRecord{Token: storage.Token{ID: r.ID, KeyID: r.Key, Name: r.Name, Description: r.Description,
		Tags: r.Tags, Hint: r.Hint, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt,
		RotatedTo: r.RotatedTo, RotatedAt: r.RotatedAt}}
	copy(t.Hash[:], r.Hash)
	return t
}

func fromToken(t *storage.TokenRecord) *tokenRecord {
	return &tokenRecord{ID: t.ID, Key: t.KeyID, Name: t.Name, Description: t.Description, Tags: t.Tags,
		Hint: t.Hint, ExpiresAt: t.ExpiresAt, CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt,
		RotatedTo: t.RotatedTo, RotatedAt: t.RotatedAt, Hash: t.Hash[:]}
}

func (r *auditRecord) event() storage.AuditEvent {
	return storage.AuditEvent{ID: r.ID, At: r.At, Actor: r.Actor, Action: r.Action, Target: r.Target,
		AccountID: r.Account, Details: r.Details}
}

func get(b *bbolt.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return storage.ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding record %q: %w", key, err)
	}
	return nil
}

func put(b *bbolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func indexKey(parent, child string) []byte { return []byte(parent + "\x00" + child) }
