package storage

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"sync"
	"time"

	"github.com/keygate/keygate/storage/token"
)

// Id prefixes, one per object type.
const (
	AccountIDPrefix = "acc_"
	KeyIDPrefix     = "key_"
	TokenIDPrefix   = "tok_"
	AuditIDPrefix   = "evt_"
)

// NewID returns a new id with the given type prefix: 22 base62 characters
// encoding a 48-bit millisecond time and 80 random bits, so ids sort by
// creation time (in byte order, i.e. COLLATE "C"). Within one process, ids
// made in the same millisecond count up from the first one's random bits,
// so they sort in creation order too.
func NewID(prefix string) string {
	hi, lo := nextIDBits()
	buf := make([]byte, len(prefix)+22)
	copy(buf, prefix)
	// 22 base62 digits of the 128-bit number hi:lo, least significant first.
	for i := len(buf) - 1; i >= len(prefix); i-- {
		hi, lo = divmod62(hi, lo, &buf[i])
	}
	return string(buf)
}

var idState struct {
	sync.Mutex
	ms     uint64
	hi, lo uint64
}

// nextIDBits returns the 128 bits of the next id: ms<<80 | random80.
func nextIDBits() (hi, lo uint64) {
	ms := uint64(time.Now().UnixMilli())
	idState.Lock()
	defer idState.Unlock()
	if ms <= idState.ms {
		// Same (or an earlier, if the clock stepped back) millisecond:
		// count up, carrying into the time bits if the random ones wrap.
		idState.lo++
		if idState.lo == 0 {
			idState.hi++
		}
		return idState.hi, idState.lo
	}
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], ms<<16)
	_, _ = rand.Read(raw[6:]) // never fails, see randomBase62
	idState.ms = ms
	idState.hi, idState.lo = binary.BigEndian.Uint64(raw[:8]), binary.BigEndian.Uint64(raw[8:])
	return idState.hi, idState.lo
}

// divmod62 divides the 128-bit number hi:lo by 62, writes the remainder's
// digit to d and returns the quotient.
func divmod62(hi, lo uint64, d *byte) (uint64, uint64) {
	qhi := hi / 62
	r := hi % 62
	// (r<<64 + lo) / 62, split so nothing overflows 64 bits.
	qlo, rem := bits.Div64(r, lo, 62)
	*d = token.Alphabet[rem]
	return qhi, qlo
}
