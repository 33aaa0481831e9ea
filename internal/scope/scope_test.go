package scope

import (
	"slices"
	"testing"
)

func TestValidate(t *testing.T) {
	good := []string{"*", "apps", "apps:read", "runners:credentials:create", "a_b-c:0", "x"}
	for _, s := range good {
		if err := Validate(s); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", s, err)
		}
	}
	bad := []string{"", "Apps", "a::b", "apps:", ":apps", " apps", "apps ", "apps:*", "**", "a.b", "a/b", "é", "apps,read", "apps:Read", "*:apps", "a\x00"}
	for _, s := range bad {
		if err := Validate(s); err == nil {
			t.Errorf("Validate(%q) = nil, want an error", s)
		}
	}
}

func TestValidateAll(t *testing.T) {
	if i, err := ValidateAll([]string{"apps", "Bad", "x::"}); i != 1 || err == nil {
		t.Fatalf("ValidateAll = %d, %v; want index 1 and an error", i, err)
	}
	if i, err := ValidateAll([]string{"apps", "*"}); i != -1 || err != nil {
		t.Fatalf("ValidateAll = %d, %v; want -1, nil", i, err)
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		granted, required string
		want              bool
	}{
		{"apps", "apps", true},
		{"apps", "apps:read", true},
		{"apps", "apps:run", true},
		{"apps", "apps:read:deep", true},
		{"apps:read", "apps", false},
		{"apps:read", "apps:run", false},
		{"apps", "appsx", false},
		{"apps", "apps-x", false},
		{"app", "apps", false},
		{"*", "apps", true},
		{"*", "secrets:read", true},
		{"*", "*", true},
		{"apps", "*", false},
		{"apps:read", "apps:readers", false},
	}
	for _, tt := range tests {
		if got := Covers(tt.granted, tt.required); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.granted, tt.required, got, tt.want)
		}
	}
}

func TestMissing(t *testing.T) {
	granted := []string{"apps:read", "runs"}
	if m, ok := Missing(granted, []string{"apps:read", "runs:create"}); ok {
		t.Errorf("Missing reported %q, want none", m)
	}
	if m, ok := Missing(granted, []string{"runs", "apps:run"}); !ok || m != "apps:run" {
		t.Errorf("Missing = %q, %v; want apps:run, true", m, ok)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want []string }{
		{nil, []string{}},
		{[]string{"b", "a"}, []string{"a", "b"}},
		{[]string{"apps:read", "apps", "apps"}, []string{"apps"}},
		{[]string{"apps", "*", "x"}, []string{"*"}},
		{[]string{"apps:read", "apps:run"}, []string{"apps:read", "apps:run"}},
	}
	for _, tt := range tests {
		if got := Normalize(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIntersect(t *testing.T) {
	tests := []struct{ a, b, want []string }{
		{[]string{"apps"}, []string{"apps:read"}, []string{"apps:read"}},
		{[]string{"apps:read"}, []string{"apps"}, []string{"apps:read"}},
		{[]string{"*"}, []string{"apps", "runs:read"}, []string{"apps", "runs:read"}},
		{[]string{"apps", "secrets"}, []string{"*"}, []string{"apps", "secrets"}},
		{[]string{"apps"}, []string{"secrets"}, []string{}},
		{[]string{"apps:read", "runs"}, []string{"apps", "runs:create"}, []string{"apps:read", "runs:create"}},
		{nil, []string{"apps"}, []string{}},
	}
	for _, tt := range tests {
		if got := Intersect(tt.a, tt.b); !slices.Equal(got, tt.want) {
			t.Errorf("Intersect(%q, %q) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestIntersectIsSound checks on many combinations that a scope is covered
// by the intersection exactly when both sides cover it.
func TestIntersectIsSound(t *testing.T) {
	universe := []string{"*", "apps", "apps:read", "apps:run", "apps:read:x", "runs", "runs:create", "secrets"}
	var sets [][]string
	for mask := 0; mask < 1<<len(universe); mask += 7 {
		var s []string
		for i, u := range universe {
			if mask&(1<<i) != 0 {
				s = append(s, u)
			}
		}
		sets = append(sets, s)
	}
	for _, a := range sets {
		for _, b := range sets {
			in := Intersect(a, b)
			for _, r := range universe {
				want := AnyCovers(a, r) && AnyCovers(b, r)
				if got := AnyCovers(in, r); got != want {
					t.Fatalf("Intersect(%q, %q) = %q covers %q: %v, want %v", a, b, in, r, got, want)
				}
			}
		}
	}
}
