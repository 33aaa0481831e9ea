// Package scope implements Keygate's scope grammar and coverage rules.
//
// A scope is one or more segments joined by ":" (apps, apps:read,
// runners:credentials:create); segments are [a-z0-9_-]+. The single scope "*"
// covers everything. A granted scope covers a required one when they are
// equal, or when the required one starts with the granted one followed by ":".
package scope

import (
	"fmt"
	"slices"
	"strings"
)

// All is the scope that covers every other scope.
const All = "*"

// Validate reports whether s is a well-formed scope.
func Validate(s string) error {
	if s == All {
		return nil
	}
	if s == "" {
		return fmt.Errorf("empty scope")
	}
	segStart := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ':' {
			if i == segStart {
				return fmt.Errorf("scope %q: empty segment", s)
			}
			segStart = i + 1
			continue
		}
		if !isSegmentByte(s[i]) {
			return fmt.Errorf("scope %q: invalid character %q (segments are [a-z0-9_-]+ joined by ':')", s, s[i])
		}
	}
	return nil
}

func isSegmentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ValidateAll validates every scope of list and returns the index of the
// first malformed one with its error, or -1 and nil.
func ValidateAll(list []string) (int, error) {
	for i, s := range list {
		if err := Validate(s); err != nil {
			return i, err
		}
	}
	return -1, nil
}

// Covers reports whether the granted scope covers the required one.
func Covers(granted, required string) bool {
	if granted == All {
		return true
	}
	if len(required) < len(granted) || required[:len(granted)] != granted {
		return false
	}
	return len(required) == len(granted) || required[len(granted)] == ':'
}

// AnyCovers reports whether any scope of granted covers required.
func AnyCovers(granted []string, required string) bool {
	for _, g := range granted {
		if Covers(g, required) {
			return true
		}
	}
	return false
}

// Missing returns the first scope of required that granted does not cover,
// and whether there is one.
func Missing(granted, required []string) (string, bool) {
	for _, r := range required {
		if !AnyCovers(granted, r) {
			return r, true
		}
	}
	return "", false
}

// Normalize returns the minimal sorted set equivalent to list: duplicates
// and scopes covered by another member are dropped. It never returns nil.
func Normalize(list []string) []string {
	out := make([]string, 0, len(list))
	for i, s := range list {
		redundant := false
		for j, o := range list {
			// Drop s when another member covers it; of two equal members keep the first.
			if i != j && Covers(o, s) && (o != s || j < i) {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// Intersect returns the scopes held by both a and b: every scope of one set
// that the other set covers, normalized. Intersect([apps], [apps:read]) is
// [apps:read]; Intersect([*], b) is b.
func Intersect(a, b []string) []string {
	var both []string
	for _, s := range a {
		if AnyCovers(b, s) {
			both = append(both, s)
		}
	}
	for _, s := range b {
		if AnyCovers(a, s) {
			both = append(both, s)
		}
	}
	return Normalize(both)
}

// Join returns list as a comma-separated string, as placeholders show it.
func Join(list []string) string {
	return strings.Join(list, ",")
}
