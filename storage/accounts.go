package storage

import (
	"context"
	"errors"
	"strings"

	"github.com/keygate/keygate/internal/scope"
)

// checkAccountName refuses a name shaped like an account id: accounts are
// found by id or by name, so such a name would be ambiguous.
func checkAccountName(name string) error {
	if strings.HasPrefix(name, AccountIDPrefix) {
		return invalid("name", "name must not start with %q, which marks account ids", AccountIDPrefix)
	}
	return nil
}

// nameFree refuses (409, naming the field "name") the name of account a
// when another account has it.
func nameFree(tx Tx, a *Account) error {
	other, err := tx.AccountByName(a.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	case other.ID != a.ID:
		return nameTaken(a.Name)
	}
	return nil
}

// putAccount writes a. A backend that finds the name taken all the same
// (another transaction took it since nameFree looked) says ErrConflict:
// that is the same refusal.
func putAccount(tx Tx, a *Account) error {
	err := tx.PutAccount(a)
	var e *Error
	if errors.Is(err, ErrConflict) && !errors.As(err, &e) {
		return nameTaken(a.Name)
	}
	return err
}

// checkKind returns the account kind k, defaulted.
func checkKind(k string) (string, error) {
	switch k {
	case "":
		return KindUser, nil
	case KindUser, KindService:
		return k, nil
	}
	return "", invalid("kind", "kind must be %q or %q", KindUser, KindService)
}

// accountByRef finds an account by id or name.
func accountByRef(tx Tx, ref string) (*Account, error) {
	a, err := tx.Account(ref)
	if errors.Is(err, ErrNotFound) && !strings.HasPrefix(ref, AccountIDPrefix) {
		a, err = tx.AccountByName(ref)
	}
	return a, err
}

// visibleAccount finds the account ref (id or name) if p may see it.
// field names the input that held ref, for the error.
func visibleAccount(tx Tx, p Principal, ref, field string) (*Account, error) {
	a, err := accountByRef(tx, ref)
	if errors.Is(err, ErrNotFound) || err == nil && !p.sees(a.ID) {
		return nil, notFound(field, "account %q not found", ref)
	}
	return a, err
}

// writableAccount finds the account ref for a write by p: p must see it
// and cover it.
func writableAccount(tx Tx, p Principal, ref, field string) (*Account, error) {
	a, err := visibleAccount(tx, p, ref, field)
	if err != nil {
		return nil, err
	}
	return a, p.canActOnAccount(a)
}

// CreateAccount creates an account. Its name must be free (else
// ErrConflict) and its scopes held by p; its policy is p's to choose (see
// the rule for usage policies in principal.go).
func (ks *Keystore) CreateAccount(ctx context.Context, p Principal, n NewAccount) (*Account, error) {
	kind, err := checkKind(n.Kind)
	if err != nil {
		return nil, err
	}
	policy, err := checkPolicy(n.Policy, false)
	if err != nil {
		return nil, err
	}
	if err := checkAccountName(n.Name); err != nil {
		return nil, err
	}
	if err := p.grant(n.Scopes); err != nil {
		return nil, err
	}
	a := &Account{ID: NewID(AccountIDPrefix), Name: n.Name, Kind: kind, Team: n.Team,
		Scopes: nonNilScopes(scope.Normalize(n.Scopes)), Disabled: n.Disabled, Policy: policy}
	err = ks.write(ctx, p, "creating account", func(c *change) error {
		if err := nameFree(c, a); err != nil {
			return err
		}
		a.CreatedAt = c.at
		if err := putAccount(c, a); err != nil {
			return err
		}
		details := map[string]any{
			"name": a.Name, "kind": a.Kind, "team": a.Team, "scopes": a.Scopes, "disabled": a.Disabled,
		}
		auditPolicy(details, &a.Policy)
		return c.audit("account.create", a.ID, a.ID, details)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Account returns the account ref (id or name).
func (ks *Keystore) Account(ctx context.Context, p Principal, ref string) (*Account, error) {
	var a *Account
	err := ks.read(ctx, "loading account", func(tx Tx) error {
		var err error
		a, err = visibleAccount(tx, p, ref, "")
		return err
	})
	return a, err
}

// Accounts returns a page of accounts and the cursor of the next page. A
// principal that does not see all accounts lists only its own.
func (ks *Keystore) Accounts(ctx context.Context, p Principal, opts ListOptions) ([]Account, string, error) {
	limit := opts.pageSize()
	accounts := []Account{}
	var next string
	err := ks.read(ctx, "listing accounts", func(tx Tx) error {
		if !p.seesAllAccounts() {
			a, err := tx.Account(p.AccountID)
			if err == nil && a.ID > opts.After {
				accounts = append(accounts, *a)
			}
			if errors.Is(err, ErrNotFound) {
				err = nil
			}
			return err
		}
		page, err := tx.Accounts(opts.After, limit+1)
		accounts, next = cutPage(page, limit, func(a *Account) string { return a.ID })
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return nonNilList(accounts), next, nil
}

// UpdateAccount changes the account ref, which p must cover. New scopes
// must be held by p; without authority over the account's budget, its
// policy can only be tightened (see principal.go).
func (ks *Keystore) UpdateAccount(ctx context.Context, p Principal, ref string, patch AccountPatch) (*Account, error) {
	if patch.Name != nil {
		if err := checkAccountName(*patch.Name); err != nil {
			return nil, err
		}
	}
	var asked Policy
	if patch.Limits != nil {
		asked.Limits = *patch.Limits
	}
	if patch.AllowedIPs != nil {
		asked.AllowedIPs = *patch.AllowedIPs
	}
	asked, err := checkPolicy(asked, false)
	if err != nil {
		return nil, err
	}
	var out *Account
	err = ks.write(ctx, p, "updating account", func(c *change) error {
		// Editing or re-enabling an account hands its scopes to its keys:
		// only for callers holding them all.
		a, err := writableAccount(c, p, ref, "")
		if err != nil {
			return err
		}
		if patch.Scopes != nil {
			if err := p.grant(*patch.Scopes); err != nil {
				return err
			}
		}
		details := map[string]any{}
		if patch.Name != nil {
			a.Name = *patch.Name
			if err := nameFree(c, a); err != nil {
				return err
			}
			details["name"] = a.Name
		}
		if patch.Team != nil {
			a.Team = *patch.Team
			details["team"] = a.Team
		}
		if patch.Scopes != nil {
			a.Scopes = nonNilScopes(scope.Normalize(*patch.Scopes))
			details["scopes"] = a.Scopes
		}
		if patch.Disabled != nil {
			a.Disabled = *patch.Disabled
			details["disabled"] = a.Disabled
		}
		next := a.Policy
		if patch.Limits != nil {
			next.Limits = asked.Limits
			details["limits"] = auditLimits(next.Limits)
		}
		if patch.AllowedIPs != nil {
			next.AllowedIPs = asked.AllowedIPs
			details["allowed_ips"] = auditIPs(next.AllowedIPs)
		}
		if err := p.tightenOnly(a, "account "+a.ID, &next, &a.Policy); err != nil {
			return err
		}
		a.Policy = next
		if err := putAccount(c, a); err != nil {
			return err
		}
		c.inv.Accounts = append(c.inv.Accounts, a.ID)
		out = a
		return c.audit("account.update", a.ID, a.ID, details)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteAccount deletes the account ref, which p must cover, with its keys
// and their tokens.
func (ks *Keystore) DeleteAccount(ctx context.Context, p Principal, ref string) error {
	return ks.write(ctx, p, "deleting account", func(c *change) error {
		a, err := writableAccount(c, p, ref, "")
		if err != nil {
			return err
		}
		for {
			keys, err := c.Keys(KeyQuery{AccountID: a.ID, Limit: MaxPageSize})
			if err != nil {
				return err
			}
			if len(keys) == 0 {
				break
			}
			for i := range keys {
				if err := deleteKey(c, keys[i].ID); err != nil {
					return err
				}
			}
		}
		if err := c.DeleteAccount(a.ID); err != nil {
			return err
		}
		c.inv.Accounts = append(c.inv.Accounts, a.ID)
		return c.audit("account.delete", a.ID, a.ID, map[string]any{"name": a.Name})
	})
}
