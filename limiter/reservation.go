package limiter

// Reservation is credits set aside for one allowed request. Settle it
// exactly once, with Commit or Cancel; the zero Reservation (no credits
// apply) settles to nothing.
type Reservation struct {
	c      *credits
	gen    uint32
	amount int64
}

// Amount is what was reserved.
func (r *Reservation) Amount() int64 { return r.amount }

// Commit charges actual credits for the request (the route's cost, or
// what the upstream's cost header said) and returns what was charged.
// Below the reserved amount the rest goes back to the lease; above it the
// excess is taken from what the lease holds, and what it lacks becomes a
// debt paid from the key's next lease: the balance never goes below zero,
// and the charge is exact as long as the key has credits left to lease in
// the same epoch (a refill or an edit forgives the debt).
func (r *Reservation) Commit(actual int64) int64 {
	c := r.c
	if c == nil {
		return 0
	}
	r.c = nil
	actual = max(actual, 0)
	switch {
	case actual < r.amount:
		c.refund(r.gen, r.amount-actual)
	case actual > r.amount:
		excess := actual - r.amount
		if took := c.takeUpTo(excess); took < excess {
			c.debt.Add(excess - took)
			if !c.refilling.Load() {
				c.l.startRefill(c, 0, c.l.now())
			}
		}
	}
	return actual
}

// Cancel gives the whole reservation back (charge_on 2xx and the upstream
// did not answer 2xx).
func (r *Reservation) Cancel() {
	if c := r.c; c != nil {
		r.c = nil
		c.refund(r.gen, r.amount)
	}
}

func (l *Limiter) reserved(d *Decision, c *credits, gen uint32, cost int64) {
	d.Credits = true
	d.Reservation = Reservation{c: c, gen: gen, amount: cost}
	d.CreditsRemaining = c.remaining()
}
