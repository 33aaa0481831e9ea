package admin

import (
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
)

// Account is the JSON form of an account.
type Account struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Team      string    `json:"team"`
	Scopes    []string  `json:"scopes"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	// Limits are rate windows shared by all the account's keys.
	Limits []Limit `json:"limits"`
	// AllowedIPs are the prefixes its keys may be used from; empty:
	// anywhere.
	AllowedIPs []string `json:"allowed_ips"`
}

func accountJSON(a *storage.Account) Account {
	return Account{
		ID: a.ID, Name: a.Name, Kind: a.Kind, Team: a.Team, Scopes: nonNil(a.Scopes),
		Disabled: a.Disabled, CreatedAt: a.CreatedAt, Limits: limitsJSON(a.Policy.Limits), AllowedIPs: ipsJSON(a.Policy.AllowedIPs),
	}
}

// Key is the JSON form of a key. Scopes is null when the key inherits its
// account's scopes.
type Key struct {
	ID              string            `json:"id"`
	Account         string            `json:"account"`
	Name            string            `json:"name"`
	Description     string            `json:"description"`
	Tags            map[string]string `json:"tags"`
	Scopes          []string          `json:"scopes"`
	EffectiveScopes []string          `json:"effective_scopes"`
	CreatedAt       time.Time         `json:"created_at"`
	CreatedBy       string            `json:"created_by"`
	Tokens          []Token           `json:"tokens"`
	// Limits are the key's own rate windows; its account's apply too.
	Limits []Limit `json:"limits"`
	// AllowedIPs are the prefixes the key may be used from; empty:
	// anywhere its account allows.
	AllowedIPs []string `json:"allowed_ips"`
	// Credits is null when the key has no credit limit.
	Credits *Credits `json:"credits"`
	// Usage is the current use of the key's and its account's windows,
	// in GET /keys/{id} when the gateway reports it.
	Usage *Usage `json:"usage,omitempty"`
}

// Credits is a key's credit balance as the store holds it, settled (a
// refill that is due counts as done); credits that gateways hold in
// leases are not in it until they return what they did not spend.
type Credits struct {
	Remaining int64   `json:"remaining"`
	Refill    *Refill `json:"refill"`
	// NextRefill is when the refill next applies; null without one.
	NextRefill *time.Time `json:"next_refill"`
}

// Usage is the current use of rate windows.
type Usage struct {
	// Windows are the key's own, AccountWindows its account's.
	Windows        []WindowUsage `json:"windows"`
	AccountWindows []WindowUsage `json:"account_windows"`
}

// WindowUsage is how much of one rate window is used now.
type WindowUsage struct {
	Name     string    `json:"name"`
	Limit    int64     `json:"limit"`
	Window   string    `json:"window"`
	Used     int64     `json:"used"`
	ResetsAt time.Time `json:"resets_at"`
}

func limitsJSON(ws []storage.Window) []Limit {
	out := make([]Limit, len(ws))
	for i, w := range ws {
		out[i] = Limit{Name: w.Name, Limit: w.Limit, Window: storage.FormatWindowLength(w.Length)}
	}
	return out
}

func ipsJSON(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func creditsJSON(c *storage.Credits) *Credits {
	if c == nil {
		return nil
	}
	out := &Credits{Remaining: c.Remaining}
	if r := c.Refill; r != nil {
		out.Refill = &Refill{Amount: r.Amount, Interval: r.Interval, Day: r.Day}
		next := c.NextRefill
		out.NextRefill = &next
	}
	return out
}

func keyJSON(k *storage.Key, now time.Time) Key {
	out := Key{
		ID: k.ID, Account: k.AccountID, Name: k.Name, Description: k.Description, Tags: nonNilTags(k.Tags),
		Scopes: k.Scopes, EffectiveScopes: nonNil(k.EffectiveScopes), CreatedAt: k.CreatedAt,
		CreatedBy: k.CreatedBy, Tokens: make([]Token, len(k.Tokens)),
		Limits: limitsJSON(k.Policy.Limits), AllowedIPs: ipsJSON(k.Policy.AllowedIPs), Credits: creditsJSON(k.Policy.Credits),
	}
	for i := range k.Tokens {
		out.Tokens[i] = tokenJSON(&k.Tokens[i], now)
	}
	return out
}

// Token is the JSON form of a token: never its value, only its hint.
type Token struct {
	ID          string            `json:"id"`
	Key         string            `json:"key"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
	Hint        string            `json:"hint"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	CreatedAt   time.Time         `json:"created_at"`
	LastUsedAt  *time.Time        `json:"last_used_at"`
	Status      string            `json:"status"`
}

func tokenJSON(t *storage.Token, now time.Time) Token {
	return Token{
		ID: t.ID, Key: t.KeyID, Name: t.Name, Description: t.Description, Tags: nonNilTags(t.Tags),
		Hint: t.Hint, ExpiresAt: t.ExpiresAt, CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt,
		Status: t.Status(now),
	}
}

// KeyWithSecret is a key as its creation answers it: with the value of its
// new token, shown this once.
type KeyWithSecret struct {
	Key
	Secret string `json:"secret"`
}

// List is one page of a list.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilTags(t map[string]string) map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return t
}

// Field limits.
const (
	maxNameLen        = 200
	maxDescriptionLen = 2000
	maxTags           = 50
	maxTagKeyLen      = 100
	maxTagValueLen    = 500
	maxScopes         = 100
)

// checkText validates a free-text field: valid UTF-8, no control characters,
// at most max bytes, and non-empty when required.
func checkText(field, v string, required bool, max int) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return errInvalid(field, "%s is required", field)
	case len(v) > max:
		return errInvalid(field, "%s is longer than %d bytes", field, max)
	case !utf8.ValidString(v):
		return errInvalid(field, "%s is not valid UTF-8", field)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return errInvalid(field, "%s contains control characters", field)
	}
	return nil
}

// checkScopes validates a scope list written through the API.
func checkScopes(field string, list []string) error {
	if len(list) > maxScopes {
		return errInvalid(field, "%s holds more than %d scopes", field, maxScopes)
	}
	if _, err := scope.ValidateAll(list); err != nil {
		return errInvalid(field, "%v", err)
	}
	return nil
}

// checkLabels checks the fields of a label patch that are set; a key's name
// cannot be blank, a token's may be.
func checkLabels(p storage.LabelPatch, nameRequired bool) error {
	if p.Name != nil {
		if err := checkText("name", *p.Name, nameRequired, maxNameLen); err != nil {
			return err
		}
	}
	if p.Description != nil {
		if err := checkText("description", *p.Description, false, maxDescriptionLen); err != nil {
			return err
		}
	}
	if p.Tags != nil {
		return checkTags("tags", *p.Tags)
	}
	return nil
}

// checkTags validates tags: keys are non-empty and hold no ':' (the tag
// filter is key:value).
func checkTags(field string, tags map[string]string) error {
	if len(tags) > maxTags {
		return errInvalid(field, "more than %d tags", maxTags)
	}
	for k, v := range tags {
		if err := checkText(field, k, true, maxTagKeyLen); err != nil {
			return errInvalid(field, "tag name %q: must be 1 to %d bytes of text", k, maxTagKeyLen)
		}
		if strings.Contains(k, ":") {
			return errInvalid(field, "tag name %q: must not contain ':'", k)
		}
		if err := checkText(field, v, false, maxTagValueLen); err != nil {
			return errInvalid(field, "tag %q: value must be at most %d bytes of text", k, maxTagValueLen)
		}
	}
	return nil
}
