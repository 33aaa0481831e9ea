package token

import "testing"

// TestWithPrevious: after key_prefix changes, tokens of the earlier
// prefixes still pass the format check (checksum included), new ones get
// the current prefix, and other prefixes still fail.
func TestWithPrevious(t *testing.T) {
	old := mustFormat(t, "sk")
	legacy := mustFormat(t, "legacy_1")
	oldToken, legacyToken := old.Generate(), legacy.Generate()
	f, err := mustFormat(t, "kg").WithPrevious("sk", "legacy_1", "kg", "sk")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Previous(); len(got) != 2 || got[0] != "sk" || got[1] != "legacy_1" {
		t.Errorf("Previous() = %q, want [sk legacy_1]: the current prefix and repeats dropped", got)
	}
	for _, tok := range []string{oldToken, legacyToken, f.Generate()} {
		if !f.Valid(tok) {
			t.Errorf("%s… refused", tok[:8])
		}
	}
	if g := f.Generate(); g[:3] != "kg-" {
		t.Errorf("a new token starts %q, want the current prefix kg-", g[:3])
	}
	broken := oldToken[:len(oldToken)-1] + string(oldToken[len(oldToken)-1]^1)
	for _, tok := range []string{mustFormat(t, "other").Generate(), broken, "sk-" + oldToken[3:len(oldToken)-1]} {
		if f.Valid(tok) {
			t.Errorf("%q accepted", tok)
		}
	}
	if mustFormat(t, "kg").Valid(oldToken) {
		t.Error("without previous prefixes, an sk- token passes a kg format")
	}
	if _, err := f.WithPrevious("Bad-Prefix"); err == nil {
		t.Error("an invalid previous prefix accepted")
	}
}
