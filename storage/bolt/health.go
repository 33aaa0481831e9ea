package bolt

import (
	"context"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/storage"
)

// Health implements storage.HealthChecker: the file's path, the time of
// an empty read transaction, the file's format version and its record
// counts.
func (b *Backend) Health(context.Context) (*storage.StoreHealth, error) {
	h := &storage.StoreHealth{Kind: "file", Location: b.path, LatestSchemaVersion: FormatVersion}
	start := time.Now()
	if err := b.db.View(func(*bbolt.Tx) error { return nil }); err != nil {
		return h, err
	}
	h.Latency = time.Since(start)
	return h, b.db.View(func(btx *bbolt.Tx) error {
		if meta := btx.Bucket(bucketMeta); meta != nil {
			h.SchemaVersion, _ = strconv.Atoi(string(meta.Get(keyVersion)))
		}
		count := func(name []byte) int64 {
			if bk := btx.Bucket(name); bk != nil {
				return int64(bk.Stats().KeyN)
			}
			return 0
		}
		h.Counts = &storage.RecordCounts{Accounts: count(bucketAccounts), Keys: count(bucketKeys), Tokens: count(bucketTokens)}
		return nil
	})
}

var _ storage.HealthChecker = (*Backend)(nil)
