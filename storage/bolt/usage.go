package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/keygate/keygate/storage"
)

// CreditBalance implements storage.Tx. bbolt has one writer at a time, so
// an Update holds every record it reads.
func (t *tx) CreditBalance(keyID string) (*storage.CreditBalance, error) {
	var r creditRecord
	if err := get(t.bucket(bucketCredits), []byte(keyID), &r); err != nil {
		return nil, err
	}
	return r.balance(), nil
}

// CreditBalances implements storage.Tx.
func (t *tx) CreditBalances(keyIDs ...string) ([]storage.CreditBalance, error) {
	var out []storage.CreditBalance
	for _, id := range keyIDs {
		b, err := t.CreditBalance(id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *b)
	}
	return out, nil
}

// PutCreditBalance implements storage.Tx.
func (t *tx) PutCreditBalance(b *storage.CreditBalance) error {
	return put(t.bucket(bucketCredits), []byte(b.KeyID), fromBalance(b))
}

// DeleteCreditBalance implements storage.Tx.
func (t *tx) DeleteCreditBalance(keyID string) error {
	return t.bucket(bucketCredits).Delete([]byte(keyID))
}

// counterKey is the key of a window count: subject \x00 name \x00, then
// the length (ns) and the start (Unix µs) as big-endian 64-bit numbers.
func counterKey(c storage.Counter) []byte {
	k := make([]byte, 0, len(c.Subject)+len(c.Name)+18)
	k = append(append(append(append(k, c.Subject...), 0), c.Name...), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(c.Length))
	return binary.BigEndian.AppendUint64(k, uint64(c.Start.UnixMicro()))
}

// A count's value is its count and its expiry (Unix µs), 8 bytes each;
// the expiry index's keys are the expiry (8 bytes, big-endian, so that
// a cursor meets the oldest first) then the count's key.
func decodeCount(v []byte) (count, expires int64) {
	if len(v) != 16 {
		return 0, 0
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
}

func encodeCount(count, expires int64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(count)), uint64(expires))
}

func expiryKey(expires int64, key []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(expires)), key...)
}

// AddCounts implements storage.Tx.
func (t *tx) AddCounts(adds []storage.CounterAdd, read []storage.Counter) ([]int64, error) {
	counts, expiry := t.bucket(bucketCounts), t.bucket(bucketCountExpiry)
	for _, a := range adds {
		key := counterKey(a.Counter)
		count, expires := decodeCount(counts.Get(key))
		exp := a.ExpiresAt.UnixMicro()
		if exp > expires {
			if expires != 0 {
				if err := expiry.Delete(expiryKey(expires, key)); err != nil {
					return nil, err
				}
			}
			if err := expiry.Put(expiryKey(exp, key), nil); err != nil {
				return nil, err
			}
			expires = exp
		}
		if err := counts.Put(key, encodeCount(count+a.Add, expires)); err != nil {
			return nil, err
		}
	}
	out := make([]int64, len(read))
	for i, c := range read {
		out[i], _ = decodeCount(counts.Get(counterKey(c)))
	}
	return out, nil
}

// PruneCounts implements storage.Tx, walking the expiry index from the
// oldest.
func (t *tx) PruneCounts(before time.Time) error {
	counts, expiry := t.bucket(bucketCounts), t.bucket(bucketCountExpiry)
	limit := binary.BigEndian.AppendUint64(nil, uint64(before.UnixMicro()))
	var dead [][]byte
	c := expiry.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0; k, _ = c.Next() {
		dead = append(dead, bytes.Clone(k))
	}
	for _, k := range dead {
		if err := expiry.Delete(k); err != nil {
			return err
		}
		if err := counts.Delete(k[8:]); err != nil {
			return err
		}
	}
	return nil
}
