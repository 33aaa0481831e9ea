package storage

import (
	"fmt"
	"reflect"
	"time"
)

// ExportPolicy is a usage policy in an export; empty parts are left out.
type ExportPolicy struct {
	Limits     []ExportWindow `json:"limits,omitempty"`
	AllowedIPs []string       `json:"allowed_ips,omitempty"`
}

// ExportWindow is a rate window in an export; Window is a Go duration.
type ExportWindow struct {
	Name   string `json:"name"`
	Limit  int64  `json:"limit"`
	Window string `json:"window"`
}

// ExportCredits are a key's credits in an export, as the store held them:
// the balance, and when the refill next applies.
type ExportCredits struct {
	Remaining  int64         `json:"remaining"`
	Refill     *ExportRefill `json:"refill,omitempty"`
	NextRefill *time.Time    `json:"next_refill,omitempty"`
}

// ExportRefill is a refill schedule in an export.
type ExportRefill struct {
	Amount   int64  `json:"amount"`
	Interval string `json:"interval"`
	Day      int    `json:"day"`
}

func exportPolicy(p *Policy) ExportPolicy {
	var out ExportPolicy
	for _, w := range p.Limits {
		out.Limits = append(out.Limits, ExportWindow{Name: w.Name, Limit: w.Limit, Window: FormatWindowLength(w.Length)})
	}
	for _, pfx := range p.AllowedIPs {
		out.AllowedIPs = append(out.AllowedIPs, pfx.String())
	}
	return out
}

// importPolicy reads an exported policy and checks it.
func importPolicy(r *ExportPolicy, forKey bool) (Policy, error) {
	var p Policy
	for i, w := range r.Limits {
		length, err := time.ParseDuration(w.Window)
		if err != nil {
			return Policy{}, invalid(fmt.Sprintf("limits[%d].window", i), "limits[%d].window %q is not a duration", i, w.Window)
		}
		p.Limits = append(p.Limits, Window{Name: w.Name, Limit: w.Limit, Length: length})
	}
	for i, s := range r.AllowedIPs {
		pfx, err := ParseAllowedIP(fmt.Sprintf("allowed_ips[%d]", i), s)
		if err != nil {
			return Policy{}, err
		}
		p.AllowedIPs = append(p.AllowedIPs, pfx)
	}
	return checkPolicy(p, forKey)
}

// importCredits reads exported credits into the record of key keyID,
// keeping old's epoch when nothing changed; nil for none.
func importCredits(keyID string, r *ExportCredits, old *CreditBalance, at time.Time) (*CreditBalance, error) {
	if r == nil {
		return nil, nil
	}
	c := &Credits{Remaining: r.Remaining}
	if r.Refill != nil {
		c.Refill = &Refill{Amount: r.Refill.Amount, Interval: r.Refill.Interval, Day: r.Refill.Day}
	}
	p, err := checkPolicy(Policy{Credits: c}, true)
	if err != nil {
		return nil, err
	}
	b := newBalance(keyID, p.Credits, at)
	if b.Refill != nil && r.NextRefill != nil && !r.NextRefill.IsZero() {
		b.NextRefill = r.NextRefill.UTC().Truncate(time.Microsecond)
	}
	if old != nil {
		b.Epoch = nextEpoch(old.Epoch)
		if old.Remaining == b.Remaining && old.NextRefill.Equal(b.NextRefill) && reflect.DeepEqual(old.Refill, b.Refill) {
			b.Epoch = old.Epoch
		}
	}
	return b, nil
}
