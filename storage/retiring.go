package storage

import (
	"fmt"
	"time"
)

// ErrRetiring means the token is being rotated out: it cannot be rotated
// again, and its expiry can only be brought forward, never removed or
// pushed later (that would un-retire it). It wraps ErrConflict.
var ErrRetiring = fmt.Errorf("%w: the token is being rotated out", ErrConflict)

// retireAt is when a token rotated out at now with a grace stops: at the
// end of the grace, or at its own expiry if that comes first. A grace
// that outlives the token is clamped, never an error: a scheduled job
// rotates exactly the tokens about to expire.
func retireAt(now time.Time, expiresAt *time.Time, grace time.Duration) time.Time {
	end := now.Add(grace)
	if expiresAt != nil && expiresAt.Before(end) {
		return *expiresAt
	}
	return end
}

// checkRetiring refuses, with ErrRetiring, a patch that would remove the
// expiry of a token being rotated out or push it later. Stores call it in
// the transaction that applies the patch, on the token as it is there, so
// a concurrent rotation cannot slip between the check and the write.
func (p TokenPatch) checkRetiring(t *Token) error {
	if t.RotatedAt == nil {
		return nil
	}
	if p.ClearExpiry {
		return fmt.Errorf("removing the expiry of token %s: %w", t.ID, ErrRetiring)
	}
	if p.ExpiresAt != nil && t.ExpiresAt != nil && p.ExpiresAt.Truncate(time.Microsecond).After(*t.ExpiresAt) {
		return fmt.Errorf("moving the expiry of token %s past %s: %w", t.ID, t.ExpiresAt.Format(time.RFC3339), ErrRetiring)
	}
	return nil
}
