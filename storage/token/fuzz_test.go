package token

import (
	"hash/crc32"
	"strings"
	"testing"
)

// Fuzz targets for the token format, the parser every credential meets
// first. The reference below follows DESIGN.md's wording, not token.go:
// "<prefix>-", 43 base62 characters, then CRC32-IEEE of everything before
// the checksum in base62 (0-9A-Za-z), most significant digit first,
// left-padded with '0' to 6 characters.

const fuzzAlphabet = "0123456789" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"

// fuzzChecksum is the 6-character base62 CRC32-IEEE of body.
func fuzzChecksum(body string) string {
	v := uint64(crc32.ChecksumIEEE([]byte(body)))
	var digits []byte
	for v > 0 {
		digits = append([]byte{fuzzAlphabet[v%62]}, digits...)
		v /= 62
	}
	return strings.Repeat("0", 6-len(digits)) + string(digits)
}

// fuzzRefValid is the reference of Format.Valid for a "<prefix>-" format.
func fuzzRefValid(prefix, tok string) bool {
	p := prefix + "-"
	if !strings.HasPrefix(tok, p) || len(tok) != len(p)+43+6 {
		return false
	}
	for i := len(p); i < len(tok); i++ {
		if strings.IndexByte(fuzzAlphabet, tok[i]) < 0 {
			return false
		}
	}
	return tok[len(tok)-6:] == fuzzChecksum(tok[:len(tok)-6])
}

// fuzzFormat returns the format for prefix, or the default one when the
// fuzzer's prefix is not a valid key_prefix.
func fuzzFormat(t *testing.T, prefix string) (Format, string) {
	f, err := NewFormat(prefix)
	if err != nil {
		prefix = DefaultPrefix
		if f, err = NewFormat(prefix); err != nil {
			t.Fatal(err)
		}
	}
	return f, prefix
}

// fuzzBuildToken makes a well-formed token whose random part is derived
// from seed, so that the fuzzer can reach valid tokens (a random string
// almost never has a matching checksum).
func fuzzBuildToken(prefix string, seed []byte) string {
	var b strings.Builder
	b.WriteString(prefix + "-")
	for i := range 43 {
		var c byte
		if len(seed) > 0 {
			c = seed[i%len(seed)] + byte(i/len(seed))
		}
		b.WriteByte(fuzzAlphabet[int(c)%62])
	}
	body := b.String()
	return body + fuzzChecksum(body)
}

// FuzzTokenValid checks that Valid never panics and accepts exactly the
// strings the reference accepts: prefix, exact length, base62 alphabet and
// checksum.
func FuzzTokenValid(f *testing.F) {
	sk, _ := NewFormat(DefaultPrefix)
	f.Add("sk", sk.Generate())
	f.Add("sk", fuzzBuildToken("sk", []byte("seed")))
	f.Add("live_2026", fuzzBuildToken("live_2026", []byte{0, 61, 62, 255}))
	f.Add("sk", "sk-0000000000000000000000000000000000000000000000000")
	f.Add("sk", "sk-"+strings.Repeat("A", 43)+"zzzzzz")
	f.Add("sk", "sk_"+strings.Repeat("a", 49))
	f.Add("sk", "")
	f.Add("sk", "sk-")
	f.Add("a", "a-"+strings.Repeat("\xff", 49))
	f.Add("abcdefghijklmnop", fuzzBuildToken("abcdefghijklmnop", nil))
	f.Add("SK", fuzzBuildToken("sk", []byte("upper prefix falls back")))
	f.Fuzz(func(t *testing.T, prefix, tok string) {
		tf, prefix := fuzzFormat(t, prefix)
		got := tf.Valid(tok)
		if want := fuzzRefValid(prefix, tok); got != want {
			t.Fatalf("format %q: Valid(%q) = %v, reference %v", prefix, tok, got, want)
		}
		if got {
			if len(tok) != tf.Len() || !strings.HasPrefix(tok, prefix+"-") {
				t.Fatalf("accepted %q: wrong length or prefix", tok)
			}
		}
		// The same string under the default format: no panic, same answer
		// as the reference.
		if got, want := sk.Valid(tok), fuzzRefValid(DefaultPrefix, tok); got != want {
			t.Fatalf("format sk: Valid(%q) = %v, reference %v", tok, got, want)
		}
	})
}

// FuzzTokenFlip builds a well-formed token (from the fuzzer's bytes, and
// one from Generate), checks both are accepted, then changes one byte and
// checks the result is rejected: CRC32 catches every single-byte change of
// the body, and a changed checksum digit is another number.
func FuzzTokenFlip(f *testing.F) {
	f.Add("sk", []byte("abc"), uint16(0), byte('x'))
	f.Add("sk", []byte{}, uint16(3), byte('1'))
	f.Add("sk", []byte{1, 2, 3}, uint16(2), byte('_'))
	f.Add("live", []byte("zz"), uint16(51), byte('0'))
	f.Add("sk", []byte("checksum"), uint16(47), byte('Z'))
	f.Add("sk", []byte("nonbase62"), uint16(10), byte(0x80))
	f.Fuzz(func(t *testing.T, prefix string, seed []byte, pos uint16, b byte) {
		tf, prefix := fuzzFormat(t, prefix)
		for _, tok := range []string{fuzzBuildToken(prefix, seed), tf.Generate()} {
			if !tf.Valid(tok) {
				t.Fatalf("well-formed token %q rejected", tok)
			}
			i := int(pos) % len(tok)
			if tok[i] == b {
				b ^= 1
			}
			flipped := tok[:i] + string([]byte{b}) + tok[i+1:]
			if tf.Valid(flipped) {
				t.Fatalf("token %q with byte %d changed to %q accepted: %q", tok, i, b, flipped)
			}
			// Truncated and extended tokens are rejected too.
			if tf.Valid(tok[:len(tok)-1]) || tf.Valid(tok+"0") {
				t.Fatalf("token %q: truncated or extended form accepted", tok)
			}
		}
	})
}

// FuzzHint checks that Hint never panics and shows exactly the first 6 and
// last 4 bytes, never more of the token.
func FuzzHint(f *testing.F) {
	sk, _ := NewFormat(DefaultPrefix)
	f.Add(sk.Generate())
	f.Add("")
	f.Add("short")
	f.Add("0123456789")
	f.Add("012345678")
	f.Add("héllo wörld ✓")
	f.Fuzz(func(t *testing.T, tok string) {
		h := Hint(tok)
		if len(tok) < 10 {
			if h != "…" {
				t.Fatalf("Hint(%q) = %q, want …", tok, h)
			}
			return
		}
		if want := tok[:6] + "…" + tok[len(tok)-4:]; h != want {
			t.Fatalf("Hint(%q) = %q, want %q", tok, h, want)
		}
		if len(h) != 6+len("…")+4 {
			t.Fatalf("Hint(%q) = %q: %d bytes", tok, h, len(h))
		}
	})
}
