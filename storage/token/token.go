// Package token is the format of Keygate's tokens: generation, the
// checksum that rejects malformed tokens before any lookup, the SHA-256 that
// is the only form a token is stored in, and the display hint.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"unsafe"
)

// Alphabet is the base62 alphabet of tokens and ids. Its characters are
// in ASCII order, so
// fixed-width base62 strings sort like the numbers they encode.
const Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const base62 = Alphabet

const (
	// DefaultPrefix is the token prefix used when key_prefix is not set.
	DefaultPrefix = "sk"

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

// Format generates and checks tokens of the form
// <prefix>-<43 base62 random characters><6 base62 checksum characters>.
// The zero value is not usable; use NewFormat.
type Format struct {
	prefix string // including the trailing "-"
	// previous are prefixes (with their "-") that Valid still accepts but
	// Generate no longer issues: tokens issued before key_prefix changed.
	previous []string
}

// ValidatePrefix reports whether p is a usable key_prefix: 1–16 of [a-z0-9_].
func ValidatePrefix(p string) error {
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

// NewFormat returns the format for tokens with the given prefix (without
// the "-", which is added).
func NewFormat(prefix string) (Format, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Format{}, err
	}
	return Format{prefix: prefix + "-"}, nil
}

// WithPrevious returns f accepting, besides its own prefix, tokens issued
// under the given earlier prefixes (without their "-"). Tokens are stored
// as the SHA-256 of their whole value, prefix included, so a token keeps
// its identity whatever the current prefix: only the format check stood
// between it and the store.
func (f Format) WithPrevious(prefixes ...string) (Format, error) {
	out := Format{prefix: f.prefix}
	for _, p := range prefixes {
		if err := ValidatePrefix(p); err != nil {
			return Format{}, err
		}
		if p+"-" == f.prefix || slices.Contains(out.previous, p+"-") {
			continue
		}
		out.previous = append(out.previous, p+"-")
	}
	return out, nil
}

// Previous returns the earlier prefixes f accepts, without their "-".
func (f Format) Previous() []string {
	out := make([]string, len(f.previous))
	for i, p := range f.previous {
		out[i] = p[:len(p)-1]
	}
	return out
}

// Prefix returns the prefix without its "-".
func (f Format) Prefix() string { return f.prefix[:len(f.prefix)-1] }

// Len is the length of every token of this format.
func (f Format) Len() int { return len(f.prefix) + randomLen + checksumLen }

// Generate returns a new random token.
func (f Format) Generate() string {
	buf := make([]byte, f.Len())
	copy(buf, f.prefix)
	randomBase62(buf[len(f.prefix) : len(f.prefix)+randomLen])
	body := buf[:len(f.prefix)+randomLen]
	putBase62(buf[len(body):], uint64(crc32.ChecksumIEEE(body)))
	return string(buf)
}

// Valid reports whether token has this format's prefix (or one of its
// previous prefixes), length, alphabet and checksum. It is the check that
// keeps malformed tokens away from the cache and the store, and does not
// allocate.
func (f Format) Valid(token string) bool {
	if validWith(token, f.prefix) {
		return true
	}
	for _, p := range f.previous {
		if validWith(token, p) {
			return true
		}
	}
	return false
}

// validWith is Valid for one prefix (with its "-").
func validWith(token, prefix string) bool {
	if len(token) != len(prefix)+randomLen+checksumLen || token[:len(prefix)] != prefix {
		return false
	}
	bodyLen := len(prefix) + randomLen
	for i := len(prefix); i < bodyLen; i++ {
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

// Sum returns the SHA-256 of token.
func Sum(token string) Hash {
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

// stringBytes returns the bytes of s without copying them. The result must
// not be modified.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
