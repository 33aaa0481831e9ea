package storage

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync"
	"time"
	"unsafe"
)

// base62 is the token and id alphabet. Its characters are in ASCII order, so
// fixed-width base62 strings sort like the numbers they encode.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const (
	// DefaultKeyPrefix is the token prefix used when key_prefix is not set.
	DefaultKeyPrefix = "sk"

	randomLen   = 43 // 43 base62 characters carry 256.03 bits
	checksumLen = 6  // 62^6 > 2^32 holds any CRC32 value
)

// base62Value maps a byte to its base62 digit value, or -1.
var base62Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := range len(base62) {
		t[base62[i]] = int8(i)
	}
	return t
}()

// TokenFormat generates and checks tokens of the form
// <prefix>-<43 base62 random characters><6 base62 checksum characters>.
// The zero value is not usable; use NewTokenFormat.
type TokenFormat struct {
	prefix string // including the trailing "-"
}

// ValidateKeyPrefix reports whether p is a usable key_prefix: 1–16 of [a-z0-9_].
func ValidateKeyPrefix(p string) error {
	if len(p) < 1 || len(p) > 16 {
		return fmt.Errorf("key prefix %q: must be 1 to 16 characters", p)
	}
	for i := range len(p) {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("key prefix %q: invalid character %q (allowed: a-z, 0-9, _)", p, c)
		}
	}
	return nil
}

// NewTokenFormat returns the format for tokens with the given prefix (without
// the "-", which is added).
func NewTokenFormat(prefix string) (TokenFormat, error) {
	if err := ValidateKeyPrefix(prefix); err != nil {
		return TokenFormat{}, err
	}
	return TokenFormat{prefix: prefix + "-"}, nil
}

// Prefix returns the prefix without its "-".
func (f TokenFormat) Prefix() string { return f.prefix[:len(f.prefix)-1] }

// Len is the length of every token of this format.
func (f TokenFormat) Len() int { return len(f.prefix) + randomLen + checksumLen }

// Generate returns a new random token.
func (f TokenFormat) Generate() string {
	buf := make([]byte, f.Len())
	copy(buf, f.prefix)
	randomBase62(buf[len(f.prefix) : len(f.prefix)+randomLen])
	body := buf[:len(f.prefix)+randomLen]
	putBase62(buf[len(body):], uint64(crc32.ChecksumIEEE(body)))
	return string(buf)
}

// Valid reports whether token has this format's prefix, length, alphabet and
// checksum. It is the check that keeps malformed tokens away from the cache
// and the store, and does not allocate.
func (f TokenFormat) Valid(token string) bool {
	if len(token) != f.Len() || token[:len(f.prefix)] != f.prefix {
		return false
	}
	bodyLen := len(f.prefix) + randomLen
	for i := len(f.prefix); i < bodyLen; i++ {
		if base62Value[token[i]] < 0 {
			return false
		}
	}
	var sum uint64
	for i := bodyLen; i < len(token); i++ {
		v := base62Value[token[i]]
		if v < 0 {
			return false
		}
		sum = sum*62 + uint64(v)
	}
	return sum == uint64(crc32.Update(0, crc32.IEEETable, stringBytes(token[:bodyLen])))
}

// Hash is the SHA-256 of a token: the only form in which a token is stored.
type Hash [sha256.Size]byte

// Bits returns 16 bits of the hash, which change notices carry so that
// other nodes can drop negative cache entries for a new token.
func (h Hash) Bits() uint16 { return binary.LittleEndian.Uint16(h[8:10]) }

// HashToken returns the SHA-256 of token.
func HashToken(token string) Hash {
	return sha256.Sum256(stringBytes(token))
}

// Hint returns the display hint of token: its first 6 and last 4 characters.
func Hint(token string) string {
	if len(token) < 10 {
		return "…"
	}
	return token[:6] + "…" + token[len(token)-4:]
}

// randomBase62 fills dst with uniformly random base62 characters.
func randomBase62(dst []byte) {
	var pool [64]byte
	n := len(pool)
	for i := 0; i < len(dst); {
		if n == len(pool) {
			// crypto/rand.Read never returns an error: it crashes the
			// program instead when the OS cannot supply randomness.
			_, _ = rand.Read(pool[:])
			n = 0
		}
		b := pool[n]
		n++
		// 248 = 4*62: rejecting bytes above it keeps every digit equally likely.
		if b < 248 {
			dst[i] = base62[b%62]
			i++
		}
	}
}

// putBase62 writes v into dst in base62, most significant digit first,
// left-padded with '0'.
func putBase62(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
}

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
	*d = base62[rem]
	return qhi, qlo
}

// stringBytes returns the bytes of s without copying them. The result must
// not be modified.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
