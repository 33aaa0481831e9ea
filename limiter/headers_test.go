package limiter

import (
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

func TestHeaderFields(t *testing.T) {
	clk := newClock() // 00:00:10
	l := newTestLimiter(t, newStore(), clk, Options{})
	q := &Query{KeyID: "key_a",
		KeyLimits: []storage.Window{{Name: "burst", Limit: 20, Length: time.Second},
			{Name: "day", Limit: 10000, Length: 24 * time.Hour}},
		AccountID: "acc_x", AccountLimits: []storage.Window{{Name: `odd "name"\é`, Limit: 5, Length: 1500 * time.Millisecond}}}
	d := l.Allow(ctx, q)
	if got, want := string(AppendPolicy(nil, &d)),
		`"burst";q=20;w=1, "day";q=10000;w=86400, "account.odd \"name\"\\??";q=5`; got != want {
		t.Errorf("RateLimit-Policy:\n got %s\nwant %s", got, want)
	}
	// day: 24 h less the 10 s into it; the 1.5 s window's period started at 9 s.
	if got, want := string(AppendRateLimit(nil, &d)),
		`"burst";r=19;t=1, "day";r=9999;t=86390, "account.odd \"name\"\\??";r=4;t=1`; got != want {
		t.Errorf("RateLimit:\n got %s\nwant %s", got, want)
	}
	f := NewRateLimitFormat(q.KeyLimits, q.AccountLimits)
	if got, want := string(f.Append(nil, &d)), string(AppendRateLimit(nil, &d)); got != want {
		t.Errorf("RateLimitFormat.Append:\n got %s\nwant %s", got, want)
	}
	if got := string(AppendRetryAfter(nil, &d)); got != "" {
		t.Errorf("Retry-After %q on an allowed request", got)
	}
	for range 4 {
		d = l.Allow(ctx, q)
	}
	d = l.Allow(ctx, q)
	if d.Reason != ReasonRateLimited || d.Window != `odd "name"\é` || !d.WindowAccount {
		t.Fatalf("6th request: %v by %q", d.Reason, d.Window)
	}
	// The period ends in 0.5 s; then 5 must fade to 4: 1/5 of 1.5 s more.
	if d.RetryAfter != 800*time.Millisecond {
		t.Errorf("RetryAfter %v, want 800ms", d.RetryAfter)
	}
	if got, want := string(AppendRetryAfter(nil, &d)), "1"; got != want {
		t.Errorf("Retry-After %q, want %q (0.8 s rounded up)", got, want)
	}
	if got, want := string(AppendRateLimit(nil, &d)),
		`"burst";r=15;t=1, "day";r=9995;t=86390, "account.odd \"name\"\\??";r=0;t=1`; got != want {
		t.Errorf("RateLimit when refused:\n got %s\nwant %s", got, want)
	}
	var none Decision
	if got := AppendPolicy(nil, &none); len(got) != 0 {
		t.Errorf("no windows: %q, want nothing", got)
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendPolicy(buf[:0], &d)
		buf = AppendRateLimit(buf[:0], &d)
		buf = AppendRetryAfter(buf[:0], &d)
		buf = f.Append(buf[:0], &d)
	}); n != 0 {
		t.Errorf("formatting allocates %v times", n)
	}
}
