package storage

import (
	"context"
	"fmt"
	"time"
)

// StoreHealth is what a backend says about itself, for operators (the
// admin endpoint's GET /check, "caddy apikey check"): which store it is,
// whether it answers and how fast, its format version, what it holds.
type StoreHealth struct {
	// Kind names the backend: "file", "postgres", or a third-party
	// backend's Go type.
	Kind string
	// Location says where the store is, without secrets: the file's path,
	// or the PostgreSQL server, database and schema.
	Location string
	// Latency is one round trip to the store, measured by the check.
	Latency time.Duration
	// SchemaVersion is the version of the store's record format (file) or
	// schema (PostgreSQL); 0 when unknown. LatestSchemaVersion is the
	// newest this build knows; 0 when the backend has no versions.
	SchemaVersion, LatestSchemaVersion int
	// Counts are the records the store holds; nil when the backend cannot
	// count them cheaply.
	Counts *RecordCounts
}

// RecordCounts counts a store's records by type.
type RecordCounts struct {
	Accounts, Keys, Tokens int64
}

// HealthChecker is a Backend that reports on itself. Health fills what it
// knows without the store (Kind, Location, LatestSchemaVersion) even when
// it fails, and fails when the store does not answer.
type HealthChecker interface {
	Health(ctx context.Context) (*StoreHealth, error)
}

// Health checks the store: the backend's own report when it is a
// HealthChecker, else the round trip of one small read. An error means the
// store does not answer (or not as it must); the StoreHealth is then
// filled as far as the backend knows without it.
func (ks *Keystore) Health(ctx context.Context) (*StoreHealth, error) {
	if hc, ok := ks.backend.(HealthChecker); ok {
		h, err := hc.Health(ctx)
		if h == nil {
			h = &StoreHealth{Kind: fmt.Sprintf("%T", ks.backend)}
		}
		if err != nil {
			return h, fmt.Errorf("checking the key store: %w", err)
		}
		return h, nil
	}
	h := &StoreHealth{Kind: fmt.Sprintf("%T", ks.backend)}
	start := time.Now()
	err := ks.read(ctx, "checking the key store", func(tx Tx) error {
		_, err := tx.Accounts("", 1)
		return err
	})
	h.Latency = time.Since(start)
	return h, err
}
