package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/storage"
)

// Health implements storage.HealthChecker: the server, database and
// schema (never the password), the round trip of a ping, the schema
// version recorded in schema_migrations and the record counts, each round
// trip bounded by roundTripTimeout.
func (b *Backend) Health(ctx context.Context) (*storage.StoreHealth, error) {
	cfg := b.pool.Config().ConnConfig
	h := &storage.StoreHealth{
		Kind:                "postgres",
		Location:            fmt.Sprintf("schema %s of database %s on %s:%d", b.schema, cfg.Database, cfg.Host, cfg.Port),
		LatestSchemaVersion: SchemaVersion(),
	}
	pingCtx, cancel := context.WithTimeout(ctx, roundTripTimeout)
	defer cancel()
	// A pooled connection the server closed fails once: ping again, as
	// LookupToken retries, so that the check says what a request would see.
	start := time.Now()
	err := b.pool.Ping(pingCtx)
	if err != nil && pingCtx.Err() == nil {
		start = time.Now()
		err = b.pool.Ping(pingCtx)
	}
	if err != nil {
		return h, wrapErr("pinging the server", err)
	}
	h.Latency = time.Since(start)
	countCtx, cancel := context.WithTimeout(ctx, roundTripTimeout)
	defer cancel()
	var c storage.RecordCounts
	err = b.pool.QueryRow(countCtx, `SELECT
		(SELECT coalesce(max(version), 0) FROM schema_migrations),
		(SELECT count(*) FROM accounts), (SELECT count(*) FROM keys), (SELECT count(*) FROM tokens)`).
		Scan(&h.SchemaVersion, &c.Accounts, &c.Keys, &c.Tokens)
	if err != nil {
		return h, wrapErr("reading the schema version and record counts", err)
	}
	h.Counts = &c
	return h, nil
}

var _ storage.HealthChecker = (*Backend)(nil)
