package limiter

import (
	"testing"
	"time"
)

// The requests waiting when a lease lands are covered by the next lease:
// a burst on a cold key waits one more round trip, not one per lease that
// follows the spend rate.
func TestCreditsLeaseCoversWaiting(t *testing.T) {
	const burst = 100
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 10_000})
	st.leaseGate = make(chan struct{})
	st.leasing = make(chan string, 4*burst)
	l := newTestLimiter(t, st, clk, Options{})
	got := make(chan Decision, burst)
	for range burst {
		go func() { got <- l.Allow(ctx, creditQuery("key_a", 1)) }()
	}
	<-st.leasing               // the first lease, asked for by the first request
	waitTimer(t, clk, burst)   // every request waits for it
	st.leaseGate <- struct{}{} // it lands: 1 credit
	<-st.leasing               // the next one, for those still waiting
	st.mu.Lock()
	wants := append([]int64(nil), st.wants...)
	st.mu.Unlock()
	st.leaseGate <- struct{}{}
	go func() { // any low-water lease after that
		for range st.leasing {
			st.leaseGate <- struct{}{}
		}
	}()
	for range burst {
		if d := <-got; !d.Allowed() {
			t.Fatalf("a request of the burst was refused: %v", d.Reason)
		}
	}
	if len(wants) != 1 || wants[0] != 1 {
		t.Fatalf("leases asked before the second: %v, want the first (1)", wants)
	}
	st.mu.Lock()
	second := st.wants[1]
	st.mu.Unlock()
	if second < burst-1 {
		t.Fatalf("with %d requests waiting the second lease asked %d: the rest wait for more round trips", burst-1, second)
	}
}

// Once the store said the balance is spent, a request the node cannot
// cover is refused at once (429 usage_exceeded), also while the store is
// asked again: it never waits for that recheck, so a slow store cannot
// turn the refusal into 503. Credits that came back unannounced are found
// by the recheck.
func TestCreditsEmptyRefusesAtOnce(t *testing.T) {
	clk := newClock()
	st := newStore()
	st.setBalance("key_a", balance{remaining: 2})
	l := newTestLimiter(t, st, clk, Options{MinLease: 2, MaxLease: 2})
	for i := range 2 {
		if d := l.Allow(ctx, creditQuery("key_a", 1)); !d.Allowed() {
			t.Fatalf("request %d of 2 credits: %v", i, d.Reason)
		}
	}
	waitLeases(l)
	if d := l.Allow(ctx, creditQuery("key_a", 1)); d.Reason != ReasonCredits {
		t.Fatalf("spent: %v, want usage_exceeded", d.Reason)
	}
	clk.Advance(time.Second) // EmptyRecheck: the store is asked again
	st.leaseGate = make(chan struct{})
	st.leasing = make(chan string, 10)
	timers := clk.Timers() // the first request's, still set
	for i := range 3 {
		got := make(chan Decision, 1)
		go func() { got <- l.Allow(ctx, creditQuery("key_a", 1)) }()
		var d Decision
	wait:
		for {
			select {
			case d = <-got:
				break wait
			default:
				if clk.Timers() > timers {
					t.Fatalf("request %d waits for the store's recheck of a spent balance", i)
				}
				time.Sleep(time.Millisecond)
			}
		}
		if d.Reason != ReasonCredits {
			t.Fatalf("request %d during the recheck: %v, want usage_exceeded", i, d.Reason)
		}
	}
	<-st.leasing // one recheck for the three
	st.setBalance("key_a", balance{remaining: 5})
	st.leaseGate <- struct{}{}
	waitLeases(l)
	if _, _, leases := st.stats(); leases != 2 {
		t.Fatalf("%d leases, want the first and one recheck", leases)
	}
	st.leaseGate, st.leasing = nil, nil
	if d := l.Allow(ctx, creditQuery("key_a", 1)); !d.Allowed() {
		t.Fatalf("after the recheck found 5 credits: %v", d.Reason)
	}
}
