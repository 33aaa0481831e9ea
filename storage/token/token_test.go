package token

import (
	"hash/crc32"
	"math/big"
	"strings"
	"testing"
)

func mustFormat(t testing.TB, prefix string) Format {
	t.Helper()
	f, err := NewFormat(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestGenerateShape(t *testing.T) {
	for _, prefix := range []string{"sk", "a", "live_2026", "abcdefghijklmnop"} {
		f := mustFormat(t, prefix)
		seen := make(map[string]bool)
		for range 200 {
			tok := f.Generate()
			if len(tok) != len(prefix)+1+43+6 || len(tok) != f.Len() {
				t.Fatalf("token %q has length %d", tok, len(tok))
			}
			if !strings.HasPrefix(tok, prefix+"-") {
				t.Fatalf("token %q lacks prefix %q", tok, prefix+"-")
			}
			if !f.Valid(tok) {
				t.Fatalf("generated token %q is not valid", tok)
			}
			if seen[tok] {
				t.Fatalf("duplicate token %q", tok)
			}
			seen[tok] = true
		}
	}
}

// TestChecksumIsCRC32Base62 recomputes the checksum independently with
// math/big, following DESIGN.md's wording.
func TestChecksumIsCRC32Base62(t *testing.T) {
	f := mustFormat(t, "sk")
	for range 100 {
		tok := f.Generate()
		body, sum := tok[:len(tok)-6], tok[len(tok)-6:]
		want := big.NewInt(int64(crc32.ChecksumIEEE([]byte(body)))).Text(62)
		// big.Int.Text uses 0-9a-zA-Z; DESIGN.md's alphabet is 0-9A-Za-z.
		want = strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z':
				return r - 'a' + 'A'
			case r >= 'A' && r <= 'Z':
				return r - 'A' + 'a'
			}
			return r
		}, want)
		want = strings.Repeat("0", 6-len(want)) + want
		if sum != want {
			t.Fatalf("checksum of %q = %q, want %q", body, sum, want)
		}
	}
}

func TestKnownToken(t *testing.T) {
	// Body chosen by hand; CRC32-IEEE("sk-" + 43×"A") computed independently.
	body := "sk-" + strings.Repeat("A", 43)
	crc := crc32.ChecksumIEEE([]byte(body))
	var sum [6]byte
	putBase62(sum[:], uint64(crc))
	tok := body + string(sum[:])
	if !mustFormat(t, "sk").Valid(tok) {
		t.Fatalf("%q should be valid", tok)
	}
}

func TestValidRejectsMalformed(t *testing.T) {
	f := mustFormat(t, "sk")
	good := f.Generate()
	flip := func(i int) string {
		b := []byte(good)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]string{
		"empty":                "",
		"prefix only":          "sk-",
		"wrong prefix":         "pk" + good[2:],
		"prefix case":          "SK" + good[2:],
		"missing dash":         "sk" + good[3:] + "0",
		"too short":            good[:len(good)-1],
		"too long":             good + "0",
		"bad char in body":     good[:10] + "_" + good[11:],
		"dash in body":         good[:10] + "-" + good[11:],
		"bad char in checksum": good[:len(good)-1] + "+",
		"non-ascii":            good[:10] + "é" + good[12:],
		"nul byte":             good[:10] + "\x00" + good[11:],
		"space":                " " + good[1:],
		"body flipped":         flip(20),
		"checksum flipped":     flip(len(good) - 2),
		"other prefix token":   mustFormat(t, "pk").Generate(),
		"longer prefix":        mustFormat(t, "skx").Generate(),
	}
	for name, tok := range cases {
		if f.Valid(tok) {
			t.Errorf("%s: %q accepted", name, tok)
		}
	}
}

func TestKeyPrefix(t *testing.T) {
	for _, p := range []string{"sk", "a", "x_1", "abcdefghijklmnop"} {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", "SK", "s-k", "abcdefghijklmnopq", "sk ", "é"} {
		if err := ValidatePrefix(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestHint(t *testing.T) {
	tok := mustFormat(t, "sk").Generate()
	h := Hint(tok)
	if h != tok[:6]+"…"+tok[len(tok)-4:] {
		t.Fatalf("Hint = %q", h)
	}
	if strings.Contains(h, tok[6:len(tok)-4]) {
		t.Fatal("hint reveals the middle of the token")
	}
}

func TestHashToken(t *testing.T) {
	a, b := Sum("sk-a"), Sum("sk-b")
	if a == b || a != Sum("sk-a") {
		t.Fatal("Sum is not a deterministic function")
	}
}

func BenchmarkTokenValid(b *testing.B) {
	f := mustFormat(b, "sk")
	tok := f.Generate()
	b.ReportAllocs()
	for b.Loop() {
		if !f.Valid(tok) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkHashToken(b *testing.B) {
	tok := mustFormat(b, "sk").Generate()
	b.ReportAllocs()
	for b.Loop() {
		_ = Sum(tok)
	}
}
