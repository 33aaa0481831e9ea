package storage

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"time"

	"github.com/keygate/keygate/storage/token"
)

// ExportVersion is the version of the export format this code writes.
// Version 2 added usage policies (limits, allowed_ips, credits); version 0
// (records without a version, written before versioning) and version 1
// have the fields of version 2 without them, and are read as well. A
// Keygate that reads only up to version 1 refuses version 2 records
// rather than drop their policies.
const ExportVersion = 2

// Export record types.
const (
	RecordAccount = "account"
	RecordKey     = "key"
	RecordToken   = "token"
)

// ExportRecord is one line of an export (JSON Lines): an account, a key or
// a token with its SHA-256. It never holds a token value: there is none.
// Its JSON is the export format, independent of the API's objects.
type ExportRecord struct {
	Type    string         `json:"type"`
	Version int            `json:"version,omitempty"`
	Account *ExportAccount `json:"account,omitempty"`
	Key     *ExportKey     `json:"key,omitempty"`
	Token   *ExportToken   `json:"token,omitempty"`
}

// ExportAccount is an account in an export.
type ExportAccount struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Team      string    `json:"team"`
	Scopes    []string  `json:"scopes"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	ExportPolicy
}

// ExportKey is a key in an export; Scopes is null when it inherits.
type ExportKey struct {
	ID          string            `json:"id"`
	Account     string            `json:"account"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
	Scopes      []string          `json:"scopes"`
	CreatedAt   time.Time         `json:"created_at"`
	CreatedBy   string            `json:"created_by"`
	ExportPolicy
	// Credits is null when the key is unlimited.
	Credits *ExportCredits `json:"credits,omitempty"`
}

// ExportToken is a token in an export, with the hash of its value.
type ExportToken struct {
	ID          string            `json:"id"`
	Key         string            `json:"key"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
	Hint        string            `json:"hint"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	CreatedAt   time.Time         `json:"created_at"`
	LastUsedAt  *time.Time        `json:"last_used_at"`
	RotatedTo   string            `json:"rotated_to,omitempty"`
	RotatedAt   *time.Time        `json:"rotated_at,omitempty"`
	Hash        []byte            `json:"hash"`
}

// Validate checks that the record is of a known version and holds what
// its type needs.
func (r *ExportRecord) Validate() error {
	if r.Version < 0 || r.Version > ExportVersion {
		return invalid("version", "export format version %d is not one this Keygate reads (0 to %d)", r.Version, ExportVersion)
	}
	switch {
	case r.Type == RecordAccount && r.Account != nil && r.Account.ID != "" && r.Account.Name != "":
		if _, err := checkKind(r.Account.Kind); err != nil {
			return err
		}
	case r.Type == RecordKey && r.Key != nil && r.Key.ID != "" && r.Key.Account != "":
	case r.Type == RecordToken && r.Token != nil && r.Token.ID != "" && r.Token.Key != "" && len(r.Token.Hash) == len(token.Hash{}):
	default:
		return invalid("", "export record of type %q lacks its object, id, parent or hash", r.Type)
	}
	return nil
}

// exportPage is how many records an export reads at a time.
const exportPage = 500

// Export calls emit with every account, then every key followed by its
// tokens (newest first, so a rotation's successor comes before the token
// it replaces), in one consistent snapshot. It is for the trusted
// principal only: the export holds token hashes, which let another store
// verify the same tokens.
func (ks *Keystore) Export(ctx context.Context, p Principal, emit func(ExportRecord) error) error {
	if !p.Trusted {
		return &Error{Kind: ErrForbidden, Message: "export is for the trusted admin endpoint only"}
	}
	return ks.read(ctx, "exporting", func(tx Tx) error {
		for after := ""; ; {
			accounts, err := tx.Accounts(after, exportPage)
			if err != nil || len(accounts) == 0 {
				return err
			}
			for i := range accounts {
				if err := emit(exportAccount(&accounts[i])); err != nil {
					return err
				}
			}
			after = accounts[len(accounts)-1].ID
			if len(accounts) < exportPage {
				break
			}
		}
		for after := ""; ; {
			keys, err := tx.Keys(KeyQuery{After: after, Limit: exportPage})
			if err != nil || len(keys) == 0 {
				return err
			}
			balances, err := tx.CreditBalances(keyIDs(keys)...)
			if err != nil {
				return err
			}
			byKey := make(map[string]*CreditBalance, len(balances))
			for i := range balances {
				byKey[balances[i].KeyID] = &balances[i]
			}
			for i := range keys {
				k := &keys[i]
				if err := emit(exportKey(k, byKey[k.ID])); err != nil {
					return err
				}
				tokens, err := tx.Tokens(k.ID)
				if err != nil {
					return err
				}
				slices.Reverse(tokens)
				for j := range tokens {
					if err := emit(exportToken(&tokens[j])); err != nil {
						return err
					}
				}
			}
			after = keys[len(keys)-1].ID
		}
	})
}

func keyIDs(keys []Key) []string {
	ids := make([]string, len(keys))
	for i := range keys {
		ids[i] = keys[i].ID
	}
	return ids
}

func exportAccount(a *Account) ExportRecord {
	return ExportRecord{Type: RecordAccount, Version: ExportVersion, Account: &ExportAccount{
		ID: a.ID, Name: a.Name, Kind: a.Kind, Team: a.Team, Scopes: nonNilScopes(a.Scopes),
		Disabled: a.Disabled, CreatedAt: a.CreatedAt, ExportPolicy: exportPolicy(&a.Policy),
	}}
}

// exportKey is k in an export, with its credit record b (nil: none).
func exportKey(k *Key, b *CreditBalance) ExportRecord {
	rec := ExportRecord{Type: RecordKey, Version: ExportVersion, Key: &ExportKey{
		ID: k.ID, Account: k.AccountID, Name: k.Name, Description: k.Description, Tags: tagsOrEmpty(k.Tags),
		Scopes: k.Scopes, CreatedAt: k.CreatedAt, CreatedBy: k.CreatedBy, ExportPolicy: exportPolicy(&k.Policy),
	}}
	if b != nil {
		c := &ExportCredits{Remaining: b.Remaining}
		if r := b.Refill; r != nil {
			c.Refill = &ExportRefill{Amount: r.Amount, Interval: r.Interval, Day: r.Day}
			next := b.NextRefill
			c.NextRefill = &next
		}
		rec.Key.Credits = c
	}
	return rec
}

func exportToken(t *TokenRecord) ExportRecord {
	return ExportRecord{Type: RecordToken, Version: ExportVersion, Token: &ExportToken{
		ID: t.ID, Key: t.KeyID, Name: t.Name, Description: t.Description, Tags: tagsOrEmpty(t.Tags),
		Hint: t.Hint, ExpiresAt: t.ExpiresAt, CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt,
		RotatedTo: t.RotatedTo, RotatedAt: t.RotatedAt, Hash: t.Hash[:],
	}}
}

// ImportOutcome says how an imported record compares with what the store
// held under its id.
type ImportOutcome int

// Import outcomes.
const (
	// ImportCreated: the store held no record with its id.
	ImportCreated ImportOutcome = iota + 1
	// ImportUpdated: it replaced a different record with its id.
	ImportUpdated
	// ImportUnchanged: the store held it as it is.
	ImportUnchanged
)

// outcome compares a record about to be written with the one it replaces,
// both in export form (nil: none).
func outcome[T any](old, rec *T) ImportOutcome {
	switch {
	case old == nil:
		return ImportCreated
	case reflect.DeepEqual(old, rec):
		return ImportUnchanged
	}
	return ImportUpdated
}

// Import writes one exported record, replacing the record with its id:
// importing the same export twice leaves the same state. A key's account
// and a token's key must exist (imported before it); a rotated token keeps
// its link to its successor only when that exists. Trusted principal only.
func (ks *Keystore) Import(ctx context.Context, p Principal, rec ExportRecord) (ImportOutcome, error) {
	if !p.Trusted {
		return 0, &Error{Kind: ErrForbidden, Message: "import is for the trusted admin endpoint only"}
	}
	if err := rec.Validate(); err != nil {
		return 0, err
	}
	var out ImportOutcome
	err := ks.write(ctx, p, "importing "+rec.Type, func(c *change) error {
		var err error
		switch rec.Type {
		case RecordAccount:
			out, err = importAccount(c, rec.Account)
		case RecordKey:
			out, err = importKey(c, rec.Key)
		default:
			out, err = importToken(c, rec.Token)
		}
		return err
	})
	return out, err
}

func importAccount(c *change, r *ExportAccount) (ImportOutcome, error) {
	policy, err := importPolicy(&r.ExportPolicy, false)
	if err != nil {
		return 0, err
	}
	a := &Account{ID: r.ID, Name: r.Name, Kind: r.Kind, Team: r.Team, Scopes: nonNilScopes(r.Scopes),
		Disabled: r.Disabled, CreatedAt: r.CreatedAt.UTC().Truncate(time.Microsecond), Policy: policy}
	if err := nameFree(c, a); err != nil {
		return 0, err
	}
	var before *ExportAccount
	if old, err := c.Account(a.ID); err == nil {
		before = exportAccount(old).Account
	} else if !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	if err := putAccount(c, a); err != nil {
		return 0, err
	}
	c.inv.Accounts = append(c.inv.Accounts, a.ID)
	return outcome(before, exportAccount(a).Account), c.audit("account.import", a.ID, a.ID, nil)
}

func importKey(c *change, r *ExportKey) (ImportOutcome, error) {
	if _, err := c.Account(r.Account); errors.Is(err, ErrNotFound) {
		return 0, notFound("", "key %s: account %s not found", r.ID, r.Account)
	} else if err != nil {
		return 0, err
	}
	policy, err := importPolicy(&r.ExportPolicy, true)
	if err != nil {
		return 0, err
	}
	k := &Key{ID: r.ID, AccountID: r.Account, Name: r.Name, Description: r.Description, Tags: tagsOrEmpty(r.Tags),
		Scopes: r.Scopes, CreatedAt: r.CreatedAt.UTC().Truncate(time.Microsecond), CreatedBy: r.CreatedBy, Policy: policy}
	oldBalance, err := c.CreditBalance(k.ID)
	if errors.Is(err, ErrNotFound) {
		oldBalance = nil
	} else if err != nil {
		return 0, err
	}
	balance, err := importCredits(k.ID, r.Credits, oldBalance, c.at)
	if err != nil {
		return 0, err
	}
	var before *ExportKey
	if old, err := c.Key(k.ID); err == nil {
		before = exportKey(old, oldBalance).Key
	} else if !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	if err := c.PutKey(k); err != nil {
		return 0, err
	}
	if balance == nil {
		err = c.DeleteCreditBalance(k.ID)
	} else {
		err = c.PutCreditBalance(balance)
	}
	if err != nil {
		return 0, err
	}
	c.inv.Keys = append(c.inv.Keys, k.ID)
	return outcome(before, exportKey(k, balance).Key), c.audit("key.import", k.ID, k.AccountID, nil)
}

func importToken(c *change, r *ExportToken) (ImportOutcome, error) {
	k, err := c.Key(r.Key)
	if errors.Is(err, ErrNotFound) {
		return 0, notFound("", "token %s: key %s not found", r.ID, r.Key)
	} else if err != nil {
		return 0, err
	}
	t := &TokenRecord{Token: Token{ID: r.ID, KeyID: r.Key, Name: r.Name, Description: r.Description,
		Tags: tagsOrEmpty(r.Tags), Hint: r.Hint, ExpiresAt: timePtr(r.ExpiresAt), CreatedAt: r.CreatedAt.UTC().Truncate(time.Microsecond),
		LastUsedAt: timePtr(r.LastUsedAt), RotatedTo: r.RotatedTo, RotatedAt: timePtr(r.RotatedAt)}}
	copy(t.Hash[:], r.Hash)
	if other, err := c.TokenByHash(t.Hash); err == nil && other.ID != t.ID {
		return 0, conflict("hash", "token %s: its hash belongs to token %s", t.ID, other.ID)
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	if t.RotatedTo != "" {
		if _, err := c.Token(t.RotatedTo); errors.Is(err, ErrNotFound) {
			t.RotatedTo = ""
		} else if err != nil {
			return 0, err
		}
	}
	var before *ExportToken
	if old, err := c.Token(t.ID); err == nil {
		// The token is replaced whole: what it was (its hash, its key)
		// must stop verifying. Invalidate both.
		c.inv.Keys = append(c.inv.Keys, old.KeyID)
		before = exportToken(old).Token
	} else if !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	if err := c.PutToken(t); err != nil {
		return 0, err
	}
	c.inv.Tokens = append(c.inv.Tokens, t.ID)
	c.inv.Hashes = append(c.inv.Hashes, t.Hash)
	return outcome(before, exportToken(t).Token),
		c.audit("token.import", t.ID, k.AccountID, map[string]any{"key": t.KeyID, "hint": t.Hint})
}
