package storage

import "context"

// Audit returns a page of audit events, newest first, and the cursor of
// the next page. A principal that does not see all accounts reads the
// events of its own account.
func (ks *Keystore) Audit(ctx context.Context, p Principal, f AuditFilter) ([]AuditEvent, string, error) {
	limit := f.pageSize()
	q := AuditQuery{Actor: f.Actor, Action: f.Action, Target: f.Target, Before: f.After, Limit: limit + 1}
	if !p.seesAllAccounts() {
		q.AccountID = p.AccountID
	}
	var events []AuditEvent
	err := ks.read(ctx, "listing audit events", func(tx Tx) error {
		var err error
		events, err = tx.Audit(q)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	events, next := cutPage(events, limit, func(e *AuditEvent) string { return e.ID })
	return nonNilList(events), next, nil
}
