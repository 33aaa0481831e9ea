package storage

import (
	"net/netip"
	"slices"
)

// loosens returns the field of the first part of next that binds less
// than prev, or "" when next is at least as tight as prev:
//
//   - limits: every window of prev is matched by a window of next with
//     no higher limit over a length that is a whole multiple of prev's
//     (so that each window of prev lies inside one of next's); next may
//     add windows.
//   - allowed_ips: next is non-empty when prev is, and each of its
//     prefixes lies inside one of prev's.
//   - credits: next has credits when prev has, no higher balance, and
//     no refill prev lacks; a refill kept may only give less, on the
//     same schedule.
func loosens(next, prev *Policy) string {
	for _, w := range prev.Limits {
		if !slices.ContainsFunc(next.Limits, func(n Window) bool { return n.Limit <= w.Limit && n.Length%w.Length == 0 }) {
			return "limits"
		}
	}
	if !narrows(next.AllowedIPs, prev.AllowedIPs) {
		return "allowed_ips"
	}
	return loosensCredits(next.Credits, prev.Credits)
}

// narrows reports whether the allowlist next lets in no address that prev
// keeps out (an empty list lets in every address).
func narrows(next, prev []netip.Prefix) bool {
	if len(prev) == 0 {
		return true
	}
	if len(next) == 0 {
		return false
	}
	for _, n := range next {
		if !slices.ContainsFunc(prev, func(p netip.Prefix) bool { return p.Bits() <= n.Bits() && p.Contains(n.Addr()) }) {
			return false
		}
	}
	return true
}

func loosensCredits(next, prev *Credits) string {
	switch {
	case prev == nil:
		return ""
	case next == nil:
		return "credits"
	case next.Remaining > prev.Remaining:
		return "credits.remaining"
	}
	nr, pr := next.Refill, prev.Refill
	if nr != nil && (pr == nil || nr.Amount > pr.Amount || nr.Interval != pr.Interval || nr.Day != pr.Day) {
		return "credits.refill"
	}
	return ""
}
