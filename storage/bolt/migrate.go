package bolt

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// prepare creates the buckets of a new file and migrates an old one.
func prepare(btx *bbolt.Tx) error {
	version, fresh := 0, btx.Bucket(bucketAccounts) == nil
	if meta := btx.Bucket(bucketMeta); meta != nil {
		v, err := strconv.Atoi(string(meta.Get(keyVersion)))
		if err != nil {
			return fmt.Errorf("reading the format version: %w", err)
		}
		version = v
	}
	if version > FormatVersion {
		return fmt.Errorf("the file has format version %d, written by a newer Keygate (this one reads up to %d)", version, FormatVersion)
	}
	for _, b := range slices.Concat([][]byte{bucketMeta}, recordBuckets, indexBuckets, counterBuckets) {
		if _, err := btx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	if !fresh && version < 1 {
		if err := migrateV0(btx); err != nil {
			return fmt.Errorf("migrating from format version 0: %w", err)
		}
	}
	// Version 1 to 2: the new buckets above; records of version 1 read as
	// version 2 records without a policy.
	return btx.Bucket(bucketMeta).Put(keyVersion, []byte(strconv.Itoa(FormatVersion)))
}

// auditRecordV0 is an audit event as version 0 wrote it: the fields of
// the API's type, untagged, beside the account.
type auditRecordV0 struct {
	ID      string
	At      time.Time
	Actor   string
	Action  string
	Target  string
	Details map[string]any
	Account string `json:"account"`
}

// migrateV0 rewrites the records of version 0 in version 1 and rebuilds
// every index from the records: version 0 could leave a stale hash index
// entry behind an import, which must not survive.
func migrateV0(btx *bbolt.Tx) error {
	audit := btx.Bucket(bucketAudit)
	var events []auditRecord
	err := audit.ForEach(func(_, v []byte) error {
		var old auditRecordV0
		if err := json.Unmarshal(v, &old); err != nil {
			return err
		}
		events = append(events, auditRecord{ID: old.ID, At: old.At, Actor: old.Actor, Action: old.Action,
			Target: old.Target, Account: old.Account, Details: old.Details})
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit events: %w", err)
	}
	for i := range events {
		if err := put(audit, []byte(events[i].ID), &events[i]); err != nil {
			return err
		}
	}
	// Accounts, keys and tokens have the same fields in both versions;
	// re-encoding them normalizes what version 0 left null.
	if err := rewrite(btx.Bucket(bucketAccounts), func() any { return new(accountRecord) }); err != nil {
		return err
	}
	if err := rewrite(btx.Bucket(bucketKeys), func() any { return new(keyRecord) }); err != nil {
		return err
	}
	if err := rewrite(btx.Bucket(bucketTokens), func() any { return new(tokenRecord) }); err != nil {
		return err
	}
	return rebuildIndexes(btx)
}

// rewrite decodes every record of b into a new value and encodes it again.
func rewrite(b *bbolt.Bucket, newRecord func() any) error {
	recs := map[string]any{}
	err := b.ForEach(func(k, v []byte) error {
		r := newRecord()
		if err := json.Unmarshal(v, r); err != nil {
			return fmt.Errorf("record %q: %w", k, err)
		}
		recs[string(k)] = r
		return nil
	})
	if err != nil {
		return err
	}
	for k, r := range recs {
		if err := put(b, []byte(k), r); err != nil {
			return err
		}
	}
	return nil
}

// rebuildIndexes empties the index buckets and fills them from the
// records.
func rebuildIndexes(btx *bbolt.Tx) error {
	for _, name := range indexBuckets {
		if err := btx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := btx.CreateBucket(name); err != nil {
			return err
		}
	}
	names, accountKeys := btx.Bucket(bucketAccountNames), btx.Bucket(bucketAccountKeys)
	hashes, keyTokens := btx.Bucket(bucketTokenHashes), btx.Bucket(bucketKeyTokens)
	err := btx.Bucket(bucketAccounts).ForEach(func(_, v []byte) error {
		var a accountRecord
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		return names.Put([]byte(a.Name), []byte(a.ID))
	})
	if err != nil {
		return err
	}
	err = btx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
		var k keyRecord
		if err := json.Unmarshal(v, &k); err != nil {
			return err
		}
		return accountKeys.Put(indexKey(k.Account, k.ID), nil)
	})
	if err != nil {
		return err
	}
	return btx.Bucket(bucketTokens).ForEach(func(_, v []byte) error {
		var t tokenRecord
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if err := hashes.Put(t.Hash, []byte(t.ID)); err != nil {
			return err
		}
		return keyTokens.Put(indexKey(t.Key, t.ID), nil)
	})
}
