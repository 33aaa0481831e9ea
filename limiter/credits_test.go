package limiter

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func creditQuery(id string, cost int64) *Query {
	return &Query{KeyID: id, Credits: true, Cost: cost}
}

// held is what a limiter holds of a key's credits.
func heldCredits(l *Limiter, keyID string) int64 {
	v, ok := l.subjects.Load(keyID)
	if !ok {
		return 0
	}
	c := v.(*subject).credits.Load()
	if c == nil {
		return 0
	}
	return availOf(c.word.Load())
}

// 1,000 credits, 10,000 concurrent requests over 3 nodes: exactly 1,000
// pass, and what the nodes were granted is what they spent.
func TestCreditsAcrossNodesExact(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 1000})
	nodes := make([]*Limiter, 3)
	for i := range nodes {
		nodes[i] = newTestLimiter(t, st, clk, Options{})
	}
	var passed, refusedCredits atomic.Int64
	var wg sync.WaitGroup
	for i := range 10_000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := nodes[i%3].Allow(ctx, creditQuery("key_a", 1))
			switch d.Reason {
			case ReasonNone:
				passed.Add(1)
				d.Reservation.Commit(1)
			case ReasonCredits:
				refusedCredits.Add(1)
			default:
				t.Errorf("refused with %v", d.Reason)
			}
		}()
	}
	wg.Wait()
	var held int64
	for _, l := range nodes {
		waitLeases(l)
		held += heldCredits(l, "key_a")
	}
	granted, returned, leases := st.stats()
	if passed.Load()+held != granted-returned || granted-returned+st.remaining("key_a") != 1000 {
		t.Fatalf("passed %d + held %d, granted %d − returned %d, store %d: credits made or lost",
			passed.Load(), held, granted, returned, st.remaining("key_a"))
	}
	if passed.Load() != 1000 {
		t.Fatalf("%d passed (%d still held by nodes), want exactly 1000", passed.Load(), held)
	}
	t.Logf("1000 passed, %d refused usage_exceeded, %d leases", refusedCredits.Load(), leases)
}

// A node that crashes (never closes) loses at most what it held: the
// others never spend more than the balance.
func TestCreditsCrashLosesAtMostItsLease(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 1000})
	crashed := New(st, Options{Clock: clk})
	live := newTestLimiter(t, st, clk, Options{})
	var passed int64
	for range 300 {
		if d := crashed.Allow(ctx, creditQuery("key_a", 1)); d.Allowed() {
			passed++
		}
	}
	waitLeases(crashed)
	lost := heldCredits(crashed, "key_a")
	// What a node holds is at most its last lease plus what was left
	// below the low-water mark when it asked for it.
	var lastLease int64
	if c := credsOf(crashed, "key_a"); c != nil {
		c.mu.Lock()
		lastLease = c.lease.Granted + c.lowWater.Load()
		c.mu.Unlock()
	}
	crashed.cancel() // kill -9: nothing returned
	for range 2000 {
		if d := live.Allow(ctx, creditQuery("key_a", 1)); d.Allowed() {
			passed++
		}
	}
	waitLeases(live)
	if passed > 1000 {
		t.Fatalf("%d passed of a 1000 balance", passed)
	}
	if passed+lost+heldCredits(live, "key_a") != 1000 {
		t.Fatalf("passed %d, lost %d, held %d: want 1000 in all", passed, lost, heldCredits(live, "key_a"))
	}
	if lost > lastLease {
		t.Fatalf("the crash lost %d, more than its last lease and low-water mark %d", lost, lastLease)
	}
	t.Logf("crash lost %d credits (last lease + low water: %d)", lost, lastLease)
}

func credsOf(l *Limiter, keyID string) *credits {
	v, ok := l.subjects.Load(keyID)
	if !ok {
		return nil
	}
	return v.(*subject).credits.Load()
}

// Reserve before the upstream, settle after: below the reservation the rest
// comes back, above it the excess takes what the lease holds.
func TestCreditsReserveCommit(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 10})
	l := newTestLimiter(t, st, clk, Options{MinLease: 10})
	d := l.Allow(ctx, creditQuery("key_a", 5))
	if !d.Allowed() || d.Reservation.Amount() != 5 {
		t.Fatalf("reserve 5 of 10: %v amount %d", d.Reason, d.Reservation.Amount())
	}
	if got := d.Reservation.Commit(2); got != 2 || heldCredits(l, "key_a") != 8 {
		t.Fatalf("commit 2 of 5 charged %d, holds %d; want 2 and 8", got, heldCredits(l, "key_a"))
	}
	if got := d.Reservation.Commit(2); got != 0 || heldCredits(l, "key_a") != 8 {
		t.Fatalf("a second commit charged %d", got)
	}
	d = l.Allow(ctx, creditQuery("key_a", 1))
	d.Reservation.Cancel()
	if heldCredits(l, "key_a") != 8 {
		t.Fatalf("cancel: holds %d, want 8", heldCredits(l, "key_a"))
	}
	d = l.Allow(ctx, creditQuery("key_a", 1))
	// 8 held, none left in the store: 8 are spent, the rest is owed and
	// never paid, since the balance does not go below zero.
	if got := d.Reservation.Commit(50); got != 50 || heldCredits(l, "key_a") != 0 {
		t.Fatalf("commit 50 with 8 held charged %d, holds %d; want 50 and 0", got, heldCredits(l, "key_a"))
	}
	waitLeases(l)
	if d = l.Allow(ctx, creditQuery("key_a", 1)); d.Reason != ReasonCredits || d.CreditsRemaining != 0 {
		t.Fatalf("after spending all: %v remaining %d, want usage_exceeded 0", d.Reason, d.CreditsRemaining)
	}
	if d.RetryAfter != 0 {
		t.Fatalf("RetryAfter %v for credits never refilled, want none", d.RetryAfter)
	}
}

// A refund after a change notice goes nowhere: the lease it came from is
// void.
func TestCreditsForgetDropsLease(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 100})
	l := newTestLimiter(t, st, clk, Options{MinLease: 10})
	d := l.Allow(ctx, creditQuery("key_a", 3))
	waitLeases(l)
	l.Forget("key_a")
	st.setBalance("key_a", balance{remaining: 50, epoch: 7}) // the admin's edit
	d.Reservation.Cancel()
	if d2 := l.Allow(ctx, creditQuery("key_a", 1)); !d2.Allowed() {
		t.Fatalf("after Forget: %v, want a fresh lease", d2.Reason)
	}
	waitLeases(l)
	granted, returned, _ := st.stats()
	if returned != 0 {
		t.Fatalf("Forget returned %d credits; the epoch changed, nothing may come back", returned)
	}
	if got := heldCredits(l, "key_a") + 1 + st.remaining("key_a"); got != 50 {
		t.Fatalf("held + spent + store = %d after the edit to 50 (granted %d): the cancelled 3 came back", got, granted)
	}
}

// Leases follow the spend: about LeaseSpan of it, at least MinLease, and
// asked for in the background before the lease runs dry.
func TestCreditsLeaseAdapts(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 1_000_000})
	st.setBalance("key_b", balance{remaining: 1_000_000})
	l := newTestLimiter(t, st, clk, Options{MaxLease: 5000})
	for range 20 {
		for range 100 {
			if d := l.Allow(ctx, creditQuery("key_a", 1)); !d.Allowed() {
				t.Fatalf("refused: %v", d.Reason)
			}
		}
		waitLeases(l)
		clk.Advance(100 * time.Millisecond) // 1,000 credits a second
	}
	st.mu.Lock()
	wants := append([]int64(nil), st.wants...)
	st.mu.Unlock()
	if wants[0] != 1 {
		t.Fatalf("first lease asked %d, want MinLease 1", wants[0])
	}
	if last := wants[len(wants)-1]; last < 500 || last > 2000 {
		t.Fatalf("leases %v: at 1,000 a second the last asked %d, want about a second's worth", wants, last)
	}
	if len(wants) > 40 {
		t.Fatalf("%d leases for 2,000 requests: leases do not grow", len(wants))
	}
	// A slow key, one request a second: its lease shrinks to about one.
	for range 30 {
		l.Allow(ctx, creditQuery("key_b", 1))
		waitLeases(l)
		clk.Advance(time.Second)
	}
	if c := credsOf(l, "key_b"); c == nil || c.want > 2 {
		t.Fatalf("at one a second the lease is %d, want 1 or 2", c.want)
	}
}

// Empty local credits: the request waits for the lease under way. While
// the store answers, a slow lease delays the request past MaxWait instead
// of refusing it, up to LeaseTimeout, then 503; once a lease failed, a
// request waits at most MaxWait for the next.
func TestCreditsWaitForLease(t *testing.T) {
	const leaseTimeout = time.Hour // on the manual clock; real time never cuts it
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 100})
	st.leaseGate = make(chan struct{})
	st.leasing = make(chan string, 10)
	l := newTestLimiter(t, st, clk, Options{MaxLease: 1, LeaseTimeout: leaseTimeout})
	answer := func() { <-st.leasing; st.leaseGate <- struct{}{} }
	got := make(chan Decision, 1)
	go func() { got <- l.Allow(ctx, creditQuery("key_a", 1)) }()
	<-st.leasing
	waitTimer(t, clk, 1) // the request waits
	st.leaseGate <- struct{}{}
	if d := <-got; !d.Allowed() {
		t.Fatalf("waited for the lease and got %v", d.Reason)
	}
	answer() // the low-water refill that followed
	waitLeases(l)
	if d := l.Allow(ctx, creditQuery("key_a", 1)); !d.Allowed() {
		t.Fatalf("with a credit held: %v", d.Reason)
	}
	// Spent again, and the refill it started is slow: past MaxWait the
	// request still waits, since the store answered the last lease.
	<-st.leasing
	go func() { got <- l.Allow(ctx, creditQuery("key_a", 1)) }()
	waitTimer(t, clk, 2)
	clk.Advance(50 * time.Millisecond)
	time.Sleep(10 * time.Millisecond)
	select {
	case d := <-got:
		t.Fatalf("a slow lease of a store that answers: %v after MaxWait, want the request to wait", d.Reason)
	default:
	}
	// It hangs: refused 503 at LeaseTimeout.
	clk.Advance(leaseTimeout)
	if d := <-got; d.Reason != ReasonUnavailable || d.RetryAfter != time.Second {
		t.Fatalf("store hanging: %v RetryAfter %v, want unavailable with Retry-After 1s", d.Reason, d.RetryAfter)
	}
	st.leaseGate <- struct{}{}
	waitLeases(l)
	if d := l.Allow(ctx, creditQuery("key_a", 1)); !d.Allowed() {
		t.Fatalf("after the late lease landed: %v", d.Reason)
	}
	answer()
	waitLeases(l)
	// The store fails a lease; after RetryBackoff the next one hangs: the
	// request waits MaxWait only.
	st.setDown(true)
	l.Allow(ctx, creditQuery("key_a", 1)) // spends the held credit, leases in vain
	answer()
	waitLeases(l)
	st.setDown(false)
	clk.Advance(time.Second) // RetryBackoff
	timers := clk.Timers()
	go func() { got <- l.Allow(ctx, creditQuery("key_a", 1)) }()
	<-st.leasing
	waitTimer(t, clk, timers+1)
	clk.Advance(50 * time.Millisecond)
	if d := <-got; d.Reason != ReasonUnavailable {
		t.Fatalf("after a failed lease, the next hanging past MaxWait: %v, want unavailable", d.Reason)
	}
	st.leaseGate <- struct{}{}
	waitLeases(l)
}

// waitTimer waits until n timers were set on the clock (a waiting request
// sets one). It polls; no timing is assumed.
func waitTimer(t *testing.T, clk *manualClock, n int) {
	t.Helper()
	for clk.Timers() < n {
		time.Sleep(time.Millisecond)
	}
}

// With the store down a node spends what it holds, then refuses 503, not
// 429; it does not ask the store on every request meanwhile.
func TestCreditsStoreDown(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 100})
	l := newTestLimiter(t, st, clk, Options{MinLease: 5, MaxLease: 5})
	l.Allow(ctx, creditQuery("key_a", 1))
	waitLeases(l)
	st.setDown(true)
	var passed int
	var d Decision
	for range 20 {
		if d = l.Allow(ctx, creditQuery("key_a", 1)); d.Allowed() {
			passed++
		}
		waitLeases(l)
	}
	if passed > 9 || passed < 4 {
		t.Fatalf("store down: %d passed, want what was held (4 to 9)", passed)
	}
	if d.Reason != ReasonUnavailable || d.RetryAfter != time.Second {
		t.Fatalf("store down: %v RetryAfter %v, want unavailable, 1s", d.Reason, d.RetryAfter)
	}
	st.mu.Lock()
	attempts := st.attempts
	st.mu.Unlock()
	if attempts > 2 {
		t.Fatalf("%d lease calls for 20 requests in an instant with the store down, want 2 at most", attempts)
	}
	st.setDown(false)
	clk.Advance(time.Second) // RetryBackoff
	if d = l.Allow(ctx, creditQuery("key_a", 1)); !d.Allowed() {
		t.Fatalf("store back: %v", d.Reason)
	}
}

// Credits refill on their schedule: refused with the time to the refill,
// then served from the refilled balance; what was held of the old period
// is void.
func TestCreditsRefillSchedule(t *testing.T) {
	clk := newClock()
	st := newStore()
	refill := clk.Now().Add(36 * time.Hour)
	st.setBalance("key_a", balance{remaining: 3, amount: 10, period: 30 * 24 * time.Hour, nextRefill: refill})
	l := newTestLimiter(t, st, clk, Options{MinLease: 2, MaxLease: 2})
	for i := range 3 {
		if d := l.Allow(ctx, creditQuery("key_a", 1)); !d.Allowed() {
			t.Fatalf("request %d: %v", i, d.Reason)
		}
		waitLeases(l)
	}
	d := l.Allow(ctx, creditQuery("key_a", 1))
	if d.Reason != ReasonCredits || d.RetryAfter != 36*time.Hour {
		t.Fatalf("spent: %v RetryAfter %v, want usage_exceeded for 36h", d.Reason, d.RetryAfter)
	}
	_, _, leases := st.stats()
	for range 100 {
		l.Allow(ctx, creditQuery("key_a", 1))
	}
	if _, _, now := st.stats(); now != leases {
		t.Fatalf("an empty key asked the store %d times in an instant", now-leases)
	}
	clk.Advance(36 * time.Hour)
	var passed int
	for range 15 {
		if d := l.Allow(ctx, creditQuery("key_a", 1)); d.Allowed() {
			passed++
		}
		waitLeases(l)
	}
	if passed != 10 {
		t.Fatalf("after the refill %d passed, want its amount 10", passed)
	}
}

// Unused credits go back to the store after LeaseIdle and on Close.
func TestCreditsReturned(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 100})
	st.setBalance("key_b", balance{remaining: 100})
	l := New(st, Options{Clock: clk, MinLease: 10})
	l.Allow(ctx, creditQuery("key_a", 1))
	l.Allow(ctx, creditQuery("key_b", 1))
	waitLeases(l)
	clk.Advance(20 * time.Second)
	l.Allow(ctx, creditQuery("key_b", 1))
	clk.Advance(10 * time.Second)
	l.Sweep(ctx)
	if got := st.remaining("key_a"); got != 99 {
		t.Fatalf("key a idle 30s: store holds %d, want 99 (its unused lease back)", got)
	}
	if got := st.remaining("key_b"); got != 90 {
		t.Fatalf("key b used 10s ago: store holds %d, want its lease still out (90)", got)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := st.remaining("key_b"); got != 98 {
		t.Fatalf("after Close the store holds %d of key b, want 98", got)
	}
	if l.Len() != 1 {
		t.Fatalf("%d subjects after key a's lease went back, want key b's only", l.Len())
	}
	if d := l.Allow(ctx, creditQuery("key_a", 1)); d.Reason != ReasonUnavailable {
		t.Fatalf("after Close: %v, want unavailable", d.Reason)
	}
}

// A refund to a lease of an older epoch is dropped, and what a node held of
// the old epoch is void once a lease of the new one lands.
func TestCreditsRefundAfterEpochChange(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 5, amount: 10, period: time.Hour, nextRefill: clk.Now().Add(time.Hour)})
	l := newTestLimiter(t, st, clk, Options{MinLease: 5, MaxLease: 5})
	d := l.Allow(ctx, creditQuery("key_a", 3)) // holds 2 of epoch 0
	waitLeases(l)
	clk.Advance(time.Hour)
	if d2 := l.Allow(ctx, creditQuery("key_a", 5)); !d2.Allowed() {
		t.Fatalf("after the refill: %v", d2.Reason)
	}
	waitLeases(l)
	granted, _, _ := st.stats()
	fresh := granted - 5 - 5 // the new epoch's grants, less the 5 spent
	if got := heldCredits(l, "key_a"); got != fresh {
		t.Fatalf("holds %d, want the new epoch's %d: the old epoch's 2 carried over", got, fresh)
	}
	d.Reservation.Cancel()
	if got := heldCredits(l, "key_a"); got != fresh {
		t.Fatalf("holds %d after cancelling a reservation of the old epoch, want %d", got, fresh)
	}
}

// A cost above what the node holds is paid from the key's next lease: the
// charge is exact while the store has credits to lease.
func TestCreditsDebtPaidFromNextLease(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 100})
	l := newTestLimiter(t, st, clk, Options{MinLease: 10, MaxLease: 10})
	d := l.Allow(ctx, creditQuery("key_a", 1))
	if !d.Allowed() {
		t.Fatalf("reserve 1 of 100: %v", d.Reason)
	}
	d.Reservation.Commit(15) // 9 held: 9 now, 5 owed
	waitLeases(l)
	if got := heldCredits(l, "key_a") + st.remaining("key_a"); got != 100-15 {
		t.Fatalf("after a charge of 15: %d held and in the store, want 85", got)
	}
}
