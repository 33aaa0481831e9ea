package postgres

import (
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/storage"
)

// windowJSON is a rate window in the limits column.
type windowJSON struct {
	Name     string `json:"name"`
	Limit    int64  `json:"limit"`
	LengthUS int64  `json:"length_us"`
}

// policyColumns are the values of a policy's limits and allowed_ips
// columns.
func policyColumns(p *storage.Policy) ([]windowJSON, []netip.Prefix) {
	limits := make([]windowJSON, len(p.Limits))
	for i, w := range p.Limits {
		limits[i] = windowJSON{Name: w.Name, Limit: w.Limit, LengthUS: w.Length.Microseconds()}
	}
	ips := p.AllowedIPs
	if ips == nil {
		ips = []netip.Prefix{}
	}
	return limits, ips
}

// policyFrom makes a policy of the limits and allowed_ips columns.
func policyFrom(limits []windowJSON, ips []netip.Prefix) storage.Policy {
	var p storage.Policy
	for _, w := range limits {
		p.Limits = append(p.Limits, storage.Window{Name: w.Name, Limit: w.Limit, Length: time.Duration(w.LengthUS) * time.Microsecond})
	}
	if len(ips) > 0 {
		p.AllowedIPs = ips
	}
	return p
}

// creditColumns are the columns of a credit balance, in scanBalance's
// order.
const creditColumns = `key_id, remaining, refill_amount, refill_interval, refill_day, next_refill, epoch`

// balanceScan receives the columns of a credit balance that may be NULL.
type balanceScan struct {
	keyID      *string
	remaining  *int64
	amount     *int64
	interval   *string
	day        *int32
	nextRefill *time.Time
	epoch      *int64
}

func (s *balanceScan) dest() []any {
	return []any{&s.keyID, &s.remaining, &s.amount, &s.interval, &s.day, &s.nextRefill, &s.epoch}
}

// balance returns what was scanned; nil when the columns were NULL (a
// LEFT JOIN that found no credits).
func (s *balanceScan) balance() *storage.CreditBalance {
	if s.keyID == nil || s.remaining == nil || s.epoch == nil {
		return nil
	}
	b := &storage.CreditBalance{KeyID: *s.keyID, Remaining: *s.remaining, Epoch: *s.epoch}
	if s.amount != nil && s.interval != nil {
		b.Refill = &storage.Refill{Amount: *s.amount, Interval: *s.interval}
		if s.day != nil {
			b.Refill.Day = int(*s.day)
		}
	}
	if s.nextRefill != nil {
		b.NextRefill = s.nextRefill.UTC()
	}
	return b
}

func scanBalance(row pgx.Row) (*storage.CreditBalance, error) {
	var s balanceScan
	if err := row.Scan(s.dest()...); err != nil {
		return nil, err
	}
	return s.balance(), nil
}

// CreditBalance implements storage.Tx; in an Update it locks the row.
func (t *tx) CreditBalance(keyID string) (*storage.CreditBalance, error) {
	return one(t, "loading credits", scanBalance, `SELECT `+creditColumns+` FROM credits WHERE key_id = $1`, keyID)
}

// CreditBalances implements storage.Tx.
func (t *tx) CreditBalances(keyIDs ...string) ([]storage.CreditBalance, error) {
	return many(t, "loading credits", scanBalance,
		`SELECT `+creditColumns+` FROM credits WHERE key_id = ANY($1) ORDER BY key_id`, keyIDs)
}

// PutCreditBalance implements storage.Tx.
func (t *tx) PutCreditBalance(b *storage.CreditBalance) error {
	var amount *int64
	var interval *string
	day := 0
	if r := b.Refill; r != nil {
		amount, interval, day = &r.Amount, &r.Interval, r.Day
	}
	var next *time.Time
	if !b.NextRefill.IsZero() {
		next = &b.NextRefill
	}
	return t.exec("writing credits", false, `INSERT INTO credits (`+creditColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (key_id) DO UPDATE SET remaining = $2, refill_amount = $3, refill_interval = $4,
			refill_day = $5, next_refill = $6, epoch = $7, updated_at = now()`,
		b.KeyID, b.Remaining, amount, interval, day, next, b.Epoch)
}

// DeleteCreditBalance implements storage.Tx.
func (t *tx) DeleteCreditBalance(keyID string) error {
	return t.exec("deleting credits", false, `DELETE FROM credits WHERE key_id = $1`, keyID)
}

// addCountsSQL adds to window counts and reads counts, in one statement.
// The statement's snapshot does not see its own upserts, so a count it
// added is read from what the upsert returned.
const addCountsSQL = `
WITH up AS (
	INSERT INTO window_counts AS w (subject, name, length_us, start, count, expires_at)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::bigint[], $6::timestamptz[])
	ON CONFLICT (subject, name, length_us, start) DO UPDATE
		SET count = w.count + excluded.count, expires_at = greatest(w.expires_at, excluded.expires_at)
	RETURNING subject, name, length_us, start, count
)
SELECT coalesce(up.count, w.count, 0)
FROM unnest($7::text[], $8::text[], $9::bigint[], $10::timestamptz[]) WITH ORDINALITY AS r(subject, name, length_us, start, i)
LEFT JOIN up ON up.subject = r.subject AND up.name = r.name AND up.length_us = r.length_us AND up.start = r.start
LEFT JOIN window_counts w ON w.subject = r.subject AND w.name = r.name AND w.length_us = r.length_us AND w.start = r.start
ORDER BY r.i`

// AddCounts implements storage.Tx with one statement.
func (t *tx) AddCounts(adds []storage.CounterAdd, read []storage.Counter) ([]int64, error) {
	n := len(adds)
	subjects, names, lengths, starts := make([]string, n), make([]string, n), make([]int64, n), make([]time.Time, n)
	counts, expires := make([]int64, n), make([]time.Time, n)
	for i, a := range adds {
		subjects[i], names[i], lengths[i], starts[i] = a.Subject, a.Name, a.Length.Microseconds(), a.Start
		counts[i], expires[i] = a.Add, a.ExpiresAt
	}
	m := len(read)
	rSubjects, rNames, rLengths, rStarts := make([]string, m), make([]string, m), make([]int64, m), make([]time.Time, m)
	for i, c := range read {
		rSubjects[i], rNames[i], rLengths[i], rStarts[i] = c.Subject, c.Name, c.Length.Microseconds(), c.Start
	}
	ctx, cancel := t.roundTrip()
	defer cancel()
	rows, err := t.tx.Query(ctx, addCountsSQL, subjects, names, lengths, starts, counts, expires,
		rSubjects, rNames, rLengths, rStarts)
	if err != nil {
		return nil, wrapErr("syncing window counts", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return out, wrapErr("syncing window counts", err)
}

// PruneCounts implements storage.Tx.
func (t *tx) PruneCounts(before time.Time) error {
	return t.exec("pruning window counts", false, `DELETE FROM window_counts WHERE expires_at < $1`, before)
}
