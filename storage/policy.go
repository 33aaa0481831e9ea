package storage

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// Bounds of usage policies, checked wherever a policy is written (the
// admin API, imports). Errors name the JSON field at fault, as the admin
// API and the export spell it: limits[1].window, allowed_ips[0],
// credits.refill.day.
const (
	// MaxWindows is the most rate windows one key or account holds.
	MaxWindows = 8
	// MinWindowLength and MaxWindowLength bound a window's length, a
	// whole number of seconds: below a second a window is a burst the
	// nodes cannot share in time, above a month it is a quota, which is
	// what credits are for.
	MinWindowLength = time.Second
	MaxWindowLength = 31 * 24 * time.Hour
	// MaxAllowedIPs is the most prefixes in one allowlist.
	MaxAllowedIPs = 64
	// MaxAmount bounds limits, balances and refill amounts: 2^53, the
	// largest integer every JSON client reads exactly.
	MaxAmount = 1 << 53
)

var windowNamePattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// checkPolicy returns p in canonical form (limits in the order given;
// allowed IPs masked, in IPv4 form when they are IPv4, without duplicates;
// monthly refill day 0 read as 1), or the invalid-input error naming the
// field at fault. Only keys (forKey) hold credits.
func checkPolicy(p Policy, forKey bool) (Policy, error) {
	var err error
	if p.Limits, err = checkLimits(p.Limits); err != nil {
		return Policy{}, err
	}
	if p.AllowedIPs, err = checkAllowedIPs(p.AllowedIPs); err != nil {
		return Policy{}, err
	}
	if p.Credits != nil {
		if !forKey {
			return Policy{}, invalid("credits", "credits are a key's, not an account's")
		}
		c := *p.Credits
		if err := checkAmount("credits.remaining", c.Remaining, 0); err != nil {
			return Policy{}, err
		}
		if c.Refill, err = checkRefill("credits.refill", c.Refill); err != nil {
			return Policy{}, err
		}
		c.NextRefill = time.Time{}
		p.Credits = &c
	}
	return p, nil
}

// checkLimits checks rate windows; empty is none (nil).
func checkLimits(ws []Window) ([]Window, error) {
	if len(ws) == 0 {
		return nil, nil
	}
	if len(ws) > MaxWindows {
		return nil, invalid("limits", "limits holds %d windows, more than %d", len(ws), MaxWindows)
	}
	out := make([]Window, len(ws))
	seen := make(map[string]bool, len(ws))
	for i, w := range ws {
		field := fmt.Sprintf("limits[%d]", i)
		switch {
		case !windowNamePattern.MatchString(w.Name):
			return nil, invalid(field+".name", "%s.name must be 1 to 32 of [a-z0-9_-]", field)
		case seen[w.Name]:
			return nil, invalid(field+".name", "window name %q is given twice", w.Name)
		}
		seen[w.Name] = true
		if err := checkAmount(field+".limit", w.Limit, 1); err != nil {
			return nil, err
		}
		if w.Length < MinWindowLength || w.Length > MaxWindowLength || w.Length%time.Second != 0 {
			return nil, invalid(field+".window", "%s.window must be a whole number of seconds from 1s to 744h (31 days)", field)
		}
		out[i] = w
	}
	return out, nil
}

// checkAmount checks an integer amount from min to MaxAmount.
func checkAmount(field string, v, min int64) error {
	if v < min || v > MaxAmount {
		return invalid(field, "%s must be an integer from %d to %d", field, min, int64(MaxAmount))
	}
	return nil
}

// checkRefill checks a refill schedule and returns it canonical.
func checkRefill(field string, r *Refill) (*Refill, error) {
	if r == nil {
		return nil, nil
	}
	c := *r
	if err := checkAmount(field+".amount", c.Amount, 1); err != nil {
		return nil, err
	}
	day := field + ".day"
	switch c.Interval {
	case RefillDaily:
		if c.Day != 0 {
			return nil, invalid(day, "a daily refill takes no day")
		}
	case RefillWeekly:
		if c.Day < 0 || c.Day > 6 {
			return nil, invalid(day, "%s of a weekly refill must be a weekday from 0 (Sunday) to 6", day)
		}
	case RefillMonthly:
		if c.Day == 0 {
			c.Day = 1
		}
		if c.Day < 1 || c.Day > 31 {
			return nil, invalid(day, "%s of a monthly refill must be from 1 to 31 (clamped to the month's last day)", day)
		}
	default:
		return nil, invalid(field+".interval", "%s.interval must be %q, %q or %q", field, RefillDaily, RefillWeekly, RefillMonthly)
	}
	return &c, nil
}

// checkAllowedIPs checks an allowlist and returns it canonical; empty is
// none (nil).
func checkAllowedIPs(ps []netip.Prefix) ([]netip.Prefix, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	if len(ps) > MaxAllowedIPs {
		return nil, invalid("allowed_ips", "allowed_ips holds %d prefixes, more than %d", len(ps), MaxAllowedIPs)
	}
	out := make([]netip.Prefix, 0, len(ps))
	seen := make(map[netip.Prefix]bool, len(ps))
	for i, p := range ps {
		c, ok := canonicalPrefix(p)
		if !ok {
			return nil, invalid(fmt.Sprintf("allowed_ips[%d]", i), "allowed_ips[%d] is not an IP prefix", i)
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// canonicalPrefix masks p and writes an IPv4-mapped IPv6 prefix in IPv4
// form, as Caddy's client_ip of an IPv4 client is.
func canonicalPrefix(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() || p.Addr().Zone() != "" {
		return netip.Prefix{}, false
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// ParseAllowedIP reads one entry of an allowlist: a CIDR prefix
// (10.0.0.0/8, 2001:db8::/32) or a single address (a /32 or /128),
// returned masked. A bad one is the invalid-input error naming field.
func ParseAllowedIP(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, invalid(field, "%s must be an IP prefix such as 10.0.0.0/8 or 2001:db8::/32, or one address", field)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	c, ok := canonicalPrefix(p)
	if !ok {
		return netip.Prefix{}, invalid(field, "%s is not an IP prefix", field)
	}
	return c, nil
}

// Allows reports whether the allowlist lets addr in: an empty one allows
// every address. addr is compared in IPv4 form when it is IPv4-mapped.
func (p *Policy) Allows(addr netip.Addr) bool {
	if len(p.AllowedIPs) == 0 {
		return true
	}
	addr = addr.Unmap().WithZone("")
	for _, pfx := range p.AllowedIPs {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}

// FormatWindowLength writes a window's length as the API and the audit
// trail show it: a Go duration without zero units (24h, 1m30s, 1s).
func FormatWindowLength(d time.Duration) string {
	s := d.String()
	for _, zero := range []string{"0s", "0m"} {
		if len(s) > len(zero) && s[len(s)-len(zero):] == zero && (s[len(s)-len(zero)-1] < '0' || s[len(s)-len(zero)-1] > '9') {
			s = s[:len(s)-len(zero)]
		}
	}
	return s
}

// auditLimits is how windows are recorded in audit details.
func auditLimits(ws []Window) []map[string]any {
	out := make([]map[string]any, len(ws))
	for i, w := range ws {
		out[i] = map[string]any{"name": w.Name, "limit": w.Limit, "window": FormatWindowLength(w.Length)}
	}
	return out
}

// auditIPs is how an allowlist is recorded in audit details.
func auditIPs(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// auditCredits is how credits are recorded in audit details (nil:
// unlimited).
func auditCredits(c *Credits) map[string]any {
	if c == nil {
		return nil
	}
	out := map[string]any{"remaining": c.Remaining, "refill": nil}
	if r := c.Refill; r != nil {
		out["refill"] = map[string]any{"amount": r.Amount, "interval": r.Interval, "day": r.Day}
	}
	return out
}

// auditPolicy records the parts of p that limit something in details.
func auditPolicy(details map[string]any, p *Policy) {
	if len(p.Limits) > 0 {
		details["limits"] = auditLimits(p.Limits)
	}
	if len(p.AllowedIPs) > 0 {
		details["allowed_ips"] = auditIPs(p.AllowedIPs)
	}
	if p.Credits != nil {
		details["credits"] = auditCredits(p.Credits)
	}
}
