package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/keygate/keygate/storage"
)

// The usage-policy fields of request bodies (limits, allowed_ips,
// credits) are decoded here, from raw JSON, so that an error names the
// element at fault (limits[1].window), which encoding/json cannot. Their
// values are judged by the keystore (storage/policy.go), with the same
// field names.

// isNull reports whether raw is JSON null.
func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// decodeAt decodes raw, the value of field, into v: no unknown fields,
// errors naming the field within it.
func decodeAt(field string, raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		f := field
		if inner := jsonPath(te.Field); inner != "" {
			f += "." + inner
		}
		return errInvalid(f, "%s must be of type %s, not %s", f, te.Type, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := field + "." + strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errInvalid(f, "unknown field %q", f)
	}
	return errInvalid(field, "%s: %v", field, err)
}

// list decodes raw, the value of field, as a JSON list (null: empty).
func list(field string, raw json.RawMessage) ([]json.RawMessage, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errInvalid(field, "%s must be a list", field)
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	return items, nil
}

type limitJSON struct {
	Name   *string `json:"name"`
	Limit  *int64  `json:"limit"`
	Window *string `json:"window"`
}

// parseLimits reads the limits field: a list of windows; null is none.
func parseLimits(raw json.RawMessage) ([]storage.Window, error) {
	items, err := list("limits", raw)
	if err != nil {
		return nil, err
	}
	out := make([]storage.Window, len(items))
	for i, item := range items {
		field := fmt.Sprintf("limits[%d]", i)
		var l limitJSON
		if err := decodeAt(field, item, &l); err != nil {
			return nil, err
		}
		switch {
		case l.Name == nil:
			return nil, errInvalid(field+".name", "%s.name is required", field)
		case l.Limit == nil:
			return nil, errInvalid(field+".limit", "%s.limit is required", field)
		case l.Window == nil:
			return nil, errInvalid(field+".window", "%s.window is required", field)
		}
		length, err := time.ParseDuration(*l.Window)
		if err != nil {
			return nil, errInvalid(field+".window", "%s.window must be a duration such as 1s, 1m or 24h", field)
		}
		out[i] = storage.Window{Name: *l.Name, Limit: *l.Limit, Length: length}
	}
	return out, nil
}

// parseAllowedIPs reads the allowed_ips field: a list of CIDR prefixes or
// addresses; null is none.
func parseAllowedIPs(raw json.RawMessage) ([]netip.Prefix, error) {
	items, err := list("allowed_ips", raw)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, len(items))
	for i, item := range items {
		field := fmt.Sprintf("allowed_ips[%d]", i)
		var s string
		if err := decodeAt(field, item, &s); err != nil {
			return nil, err
		}
		if out[i], err = storage.ParseAllowedIP(field, s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type refillJSON struct {
	Amount   *int64  `json:"amount"`
	Interval *string `json:"interval"`
	Day      *int    `json:"day"`
}

// parseRefill reads a refill object at field.
func parseRefill(field string, raw json.RawMessage) (*storage.Refill, error) {
	var r refillJSON
	if err := decodeAt(field, raw, &r); err != nil {
		return nil, err
	}
	switch {
	case isNull(raw):
		return nil, errInvalid(field, "%s must be an object", field)
	case r.Amount == nil:
		return nil, errInvalid(field+".amount", "%s.amount is required", field)
	case r.Interval == nil:
		return nil, errInvalid(field+".interval", "%s.interval is required", field)
	}
	out := &storage.Refill{Amount: *r.Amount, Interval: *r.Interval}
	if r.Day != nil {
		out.Day = *r.Day
	}
	return out, nil
}

type creditsBody struct {
	Remaining *int64          `json:"remaining"`
	Refill    json.RawMessage `json:"refill"`
	// NextRefill is what GET shows; named so that sending it back is a
	// clear 400.
	NextRefill json.RawMessage `json:"next_refill"`
}

// parseCreditsObject reads the credits field's object.
func parseCreditsObject(raw json.RawMessage) (*creditsBody, error) {
	var c creditsBody
	if err := decodeAt("credits", raw, &c); err != nil {
		return nil, err
	}
	if c.NextRefill != nil {
		return nil, errInvalid("credits.next_refill", "credits.next_refill follows from the refill: it cannot be set")
	}
	return &c, nil
}

// parseCredits reads the credits field of POST /keys: null is none.
func parseCredits(raw json.RawMessage) (*storage.Credits, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseCreditsObject(raw)
	if err != nil {
		return nil, err
	}
	if c.Remaining == nil {
		return nil, errInvalid("credits.remaining", "credits.remaining is required")
	}
	out := &storage.Credits{Remaining: *c.Remaining}
	if c.Refill != nil && !isNull(c.Refill) {
		if out.Refill, err = parseRefill("credits.refill", c.Refill); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseCreditsPatch reads the credits field of PATCH /keys/{id}: null
// removes them (clear), an object changes the fields it sets.
func parseCreditsPatch(raw json.RawMessage) (patch *storage.CreditsPatch, clear bool, err error) {
	if isNull(raw) {
		return nil, true, nil
	}
	c, err := parseCreditsObject(raw)
	if err != nil {
		return nil, false, err
	}
	patch = &storage.CreditsPatch{Remaining: c.Remaining}
	switch {
	case c.Refill == nil:
	case isNull(c.Refill):
		patch.ClearRefill = true
	default:
		if patch.Refill, err = parseRefill("credits.refill", c.Refill); err != nil {
			return nil, false, err
		}
	}
	return patch, false, nil
}

// policyOf reads the limits and allowed_ips fields of a body; when patch,
// null removes (an empty list), else null is as absent (nil).
func policyOf(limits, allowedIPs json.RawMessage, patch bool) (storage.Policy, error) {
	var p storage.Policy
	var err error
	if limits != nil && (patch || !isNull(limits)) {
		if p.Limits, err = parseLimits(limits); err != nil {
			return p, err
		}
	}
	if allowedIPs != nil && (patch || !isNull(allowedIPs)) {
		if p.AllowedIPs, err = parseAllowedIPs(allowedIPs); err != nil {
			return p, err
		}
	}
	return p, nil
}
