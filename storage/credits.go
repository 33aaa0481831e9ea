package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// checkPatchPolicy checks the policy parts of a key patch and returns
// them canonical: the limits and allowed IPs it sets, and its credits
// (a copy).
func checkPatchPolicy(patch KeyPatch) (Policy, *CreditsPatch, error) {
	var asked Policy
	if patch.Limits != nil {
		asked.Limits = *patch.Limits
	}
	if patch.AllowedIPs != nil {
		asked.AllowedIPs = *patch.AllowedIPs
	}
	asked, err := checkPolicy(asked, true)
	if err != nil {
		return Policy{}, nil, err
	}
	if patch.Credits == nil {
		return asked, nil, nil
	}
	cp := *patch.Credits
	switch {
	case patch.ClearCredits:
		return Policy{}, nil, invalid("credits", "credits cannot be set and removed at once")
	case cp.Refill != nil && cp.ClearRefill:
		return Policy{}, nil, invalid("credits.refill", "the refill cannot be set and removed at once")
	}
	if cp.Remaining != nil {
		if err := checkAmount("credits.remaining", *cp.Remaining, 0); err != nil {
			return Policy{}, nil, err
		}
	}
	if cp.Refill != nil {
		r, err := checkRefill("credits.refill", cp.Refill)
		if err != nil {
			return Policy{}, nil, err
		}
		cp.Refill = r
	}
	return asked, &cp, nil
}

// updateKeyPolicy applies the policy parts of patch, as checkPatchPolicy
// returned them (asked, credits), to k, a key of account a, as p: it
// writes the key's credit record and records the change in details; the
// caller writes the key.
func updateKeyPolicy(c *change, p Principal, a *Account, k *Key, patch KeyPatch, asked Policy, credits *CreditsPatch, details map[string]any) error {
	prev := k.Policy
	next := prev
	if patch.Limits != nil {
		next.Limits = asked.Limits
		details["limits"] = auditLimits(next.Limits)
	}
	if patch.AllowedIPs != nil {
		next.AllowedIPs = asked.AllowedIPs
		details["allowed_ips"] = auditIPs(next.AllowedIPs)
	}
	if credits == nil && !patch.ClearCredits {
		k.Policy = next
		return p.tightenOnly(a, "key "+k.ID, &next, &prev)
	}
	b, err := c.CreditBalance(k.ID)
	if errors.Is(err, ErrNotFound) {
		b, err = nil, nil
	}
	if err != nil {
		return err
	}
	if b != nil {
		b.settle(c.at)
	}
	switch cp := credits; {
	case patch.ClearCredits:
		next.Credits = nil
	case b == nil:
		n := Credits{Refill: cp.Refill}
		switch {
		case cp.Remaining != nil:
			n.Remaining = *cp.Remaining
		case cp.Refill != nil:
			n.Remaining = cp.Refill.Amount
		default:
			return invalid("credits.remaining", "credits.remaining is required to give credits to a key without any")
		}
		next.Credits = &n
	default:
		n := Credits{Remaining: b.Remaining, Refill: b.Refill}
		if cp.Remaining != nil {
			n.Remaining = *cp.Remaining
		}
		if cp.Refill != nil {
			n.Refill = cp.Refill
		} else if cp.ClearRefill {
			n.Refill = nil
		}
		next.Credits = &n
	}
	if err := p.tightenOnly(a, "key "+k.ID, &next, &prev); err != nil {
		return err
	}
	details["credits"] = auditCredits(next.Credits)
	k.Policy = next
	switch {
	case next.Credits == nil:
		k.Policy.Credits = nil
		return c.DeleteCreditBalance(k.ID)
	case b == nil:
		b = newBalance(k.ID, next.Credits, c.at)
	default:
		if r := next.Credits.Refill; r == nil {
			b.NextRefill = time.Time{}
		} else if b.Refill == nil || r.Interval != b.Refill.Interval || r.Day != b.Refill.Day {
			b.NextRefill = r.Next(c.at) // a new schedule starts now
		}
		b.Refill = next.Credits.Refill
		if credits.Remaining != nil {
			b.Remaining = next.Credits.Remaining
			b.Epoch = nextEpoch(b.Epoch)
		}
	}
	k.Policy.Credits = b.credits(c.at)
	return c.PutCreditBalance(b)
}

// LeaseCredits takes up to want credits from the balance of key keyID,
// for a node to spend locally, in one transaction that locks the balance:
// it first applies any refill due at now (see Refill.Next), then grants
// min(want, remaining), never taking the balance below zero. want 0 only
// reads (and settles) the balance. A key without credits answers
// ErrUnlimited, one that does not exist ErrNotFound. A lease writes no
// audit event and sends no change notice: it is the limiter's background
// call, never a request's.
func (ks *Keystore) LeaseCredits(ctx context.Context, keyID string, want int64, now time.Time) (CreditLease, error) {
	if want < 0 {
		return CreditLease{}, invalid("", "a lease of %d credits: want must not be negative", want)
	}
	now = now.UTC().Truncate(time.Microsecond)
	var lease CreditLease
	err := ks.backend.Update(ctx, func(tx Tx) error {
		b, err := tx.CreditBalance(keyID)
		if errors.Is(err, ErrNotFound) {
			if _, err := tx.Key(keyID); err != nil {
				return err
			}
			return ErrUnlimited
		}
		if err != nil {
			return err
		}
		changed := b.settle(now)
		granted := min(want, b.Remaining)
		b.Remaining -= granted
		if granted > 0 || changed {
			if err := tx.PutCreditBalance(b); err != nil {
				return err
			}
		}
		lease = CreditLease{KeyID: keyID, Granted: granted, Remaining: b.Remaining, Epoch: b.Epoch, NextRefill: b.NextRefill}
		return nil
	})
	switch {
	case errors.Is(err, ErrUnlimited):
		return CreditLease{KeyID: keyID}, ErrUnlimited
	case err != nil:
		return CreditLease{}, fmt.Errorf("leasing credits of key %s: %w", keyID, err)
	}
	return lease, nil
}

// ReturnCredits gives back unused credits of lease, unless the balance
// was set since the lease was taken (a refill, an edit: its epoch
// changed), or the key lost its credits: then the return is dropped,
// without error, since the balance it came from is gone. unused must lie
// between 0 and lease.Granted.
func (ks *Keystore) ReturnCredits(ctx context.Context, lease CreditLease, unused int64) error {
	if unused < 0 || unused > lease.Granted {
		return invalid("", "returning %d credits of a lease of %d", unused, lease.Granted)
	}
	if unused == 0 {
		return nil
	}
	err := ks.backend.Update(ctx, func(tx Tx) error {
		b, err := tx.CreditBalance(lease.KeyID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil || b.Epoch != lease.Epoch {
			return err
		}
		b.Remaining += unused
		return tx.PutCreditBalance(b)
	})
	if err != nil {
		return fmt.Errorf("returning credits of key %s: %w", lease.KeyID, err)
	}
	return nil
}
