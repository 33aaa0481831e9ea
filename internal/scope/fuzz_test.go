package scope

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fuzzGrammar is the scope grammar of DESIGN.md: "*", or segments
// [a-z0-9_-]+ joined by ':'.
var fuzzGrammar = regexp.MustCompile(`^(\*|[a-z0-9_-]+(:[a-z0-9_-]+)*)$`)

// FuzzValidate checks that Validate never panics and accepts exactly the
// strings of the grammar.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		"*", "apps", "apps:read", "runners:credentials:create", "a-b_c:0",
		"", ":", "apps:", ":apps", "apps::read", "Apps", "apps read", "**", "*:apps",
		"apps:*", "apps\x00", "äpps", "apps\n", "a,b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := Validate(s)
		if want := fuzzGrammar.MatchString(s); (err == nil) != want {
			t.Fatalf("Validate(%q) = %v, grammar says valid=%v", s, err, want)
		}
		if err != nil && err.Error() == "" {
			t.Fatalf("Validate(%q): empty error message", s)
		}
		// ValidateAll agrees with Validate on a one-element list.
		if i, err2 := ValidateAll([]string{"apps", s}); (err == nil) != (err2 == nil) || err != nil && i != 1 {
			t.Fatalf("ValidateAll([apps %q]) = %d, %v; Validate: %v", s, i, err2, err)
		}
	})
}

// fuzzCovers is the coverage rule of DESIGN.md, for well-formed scopes.
func fuzzCovers(granted, required string) bool {
	return granted == All || granted == required || strings.HasPrefix(required, granted+":")
}

func fuzzAnyCovers(list []string, r string) bool {
	for _, g := range list {
		if fuzzCovers(g, r) {
			return true
		}
	}
	return false
}

// fuzzList splits the fuzzer's comma-separated list, keeping well-formed
// scopes only when wellFormed is set.
func fuzzList(s string, wellFormed bool) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if !wellFormed || Validate(p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// fuzzProbes are the scopes to test coverage with: the members of the
// lists, their parents and children, and the query.
func fuzzProbes(r string, lists ...[]string) []string {
	probes := []string{r, "*", "x"}
	for _, l := range lists {
		for _, s := range l {
			probes = append(probes, s, s+":x", s+"x")
			if i := strings.LastIndexByte(s, ':'); i > 0 {
				probes = append(probes, s[:i])
			}
		}
	}
	var out []string
	for _, p := range probes {
		if Validate(p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// FuzzAlgebra checks Covers, AnyCovers, Missing, Normalize and Intersect
// against the rules: Covers is reflexive, "*" covers everything, Covers
// follows the segment-prefix rule on well-formed scopes, Normalize keeps
// what a list covers and drops redundancy, and a scope is covered by
// Intersect(a, b) exactly when both a and b cover it.
func FuzzAlgebra(f *testing.F) {
	f.Add("apps", "apps:read", "apps:read")
	f.Add("apps,runs:read", "apps:read,runs", "runs:read:x")
	f.Add("*", "apps:read,billing", "billing:x")
	f.Add("*", "*", "*")
	f.Add("apps:read", "apps", "apps")
	f.Add("app", "apps", "apps:run")
	f.Add("a,a,a:b", "a:b,a:b:c", "a:b:c")
	f.Add("apps,,Bad,apps:", "apps:run", "apps:run")
	f.Add("", "apps", "apps")
	f.Add("a-b,a_b", "a-b:c,a", "a-b:c")
	f.Fuzz(func(t *testing.T, as, bs, r string) {
		// No panics on anything, well-formed or not.
		rawA, rawB := fuzzList(as, false), fuzzList(bs, false)
		_ = Covers(as, bs)
		_ = AnyCovers(rawA, r)
		_, _ = Missing(rawA, rawB)
		_ = Normalize(rawA)
		_ = Intersect(rawA, rawB)
		if !Covers(r, r) {
			t.Fatalf("Covers(%q, %q) = false: not reflexive", r, r)
		}
		if !Covers(All, r) {
			t.Fatalf("Covers(*, %q) = false", r)
		}

		a, b := fuzzList(as, true), fuzzList(bs, true)
		probes := fuzzProbes(r, a, b)
		for _, g := range append(append([]string{All}, a...), b...) {
			for _, p := range probes {
				if got, want := Covers(g, p), fuzzCovers(g, p); got != want {
					t.Fatalf("Covers(%q, %q) = %v, want %v", g, p, got, want)
				}
			}
		}

		for _, l := range [][]string{a, b} {
			n := Normalize(l)
			if n == nil {
				t.Fatalf("Normalize(%q) = nil", l)
			}
			if !slices.IsSorted(n) {
				t.Fatalf("Normalize(%q) = %q: not sorted", l, n)
			}
			for i, x := range n {
				if !slices.Contains(l, x) {
					t.Fatalf("Normalize(%q) = %q: %q is not a member", l, n, x)
				}
				for j, y := range n {
					if i != j && Covers(x, y) {
						t.Fatalf("Normalize(%q) = %q: %q covers %q", l, n, x, y)
					}
				}
			}
			if n2 := Normalize(n); !slices.Equal(n, n2) {
				t.Fatalf("Normalize not idempotent: %q then %q", n, n2)
			}
			for _, p := range probes {
				if AnyCovers(n, p) != fuzzAnyCovers(l, p) {
					t.Fatalf("Normalize(%q) = %q changes coverage of %q", l, n, p)
				}
			}
			missing, ok := Missing(l, probes)
			wantOK := false
			for _, p := range probes {
				if !fuzzAnyCovers(l, p) {
					wantOK = true
					if missing != p {
						t.Fatalf("Missing(%q, %q) = %q, want %q", l, probes, missing, p)
					}
					break
				}
			}
			if ok != wantOK {
				t.Fatalf("Missing(%q, %q) = %q, %v", l, probes, missing, ok)
			}
		}

		in := Intersect(a, b)
		if in == nil {
			t.Fatalf("Intersect(%q, %q) = nil", a, b)
		}
		if rev := Intersect(b, a); !slices.Equal(in, rev) {
			t.Fatalf("Intersect not symmetric: (%q, %q) = %q, reversed %q", a, b, in, rev)
		}
		for _, x := range in {
			if !slices.Contains(a, x) && !slices.Contains(b, x) {
				t.Fatalf("Intersect(%q, %q) = %q: %q comes from neither", a, b, in, x)
			}
		}
		for _, p := range probes {
			got := fuzzAnyCovers(in, p)
			if want := fuzzAnyCovers(a, p) && fuzzAnyCovers(b, p); got != want {
				t.Fatalf("Intersect(%q, %q) = %q covers %q: %v, want %v", a, b, in, p, got, want)
			}
		}
		// Intersect with "*" is the other side, normalized.
		if got := Intersect([]string{All}, a); !slices.Equal(got, Normalize(a)) {
			t.Fatalf("Intersect([*], %q) = %q, want %q", a, got, Normalize(a))
		}
	})
}
