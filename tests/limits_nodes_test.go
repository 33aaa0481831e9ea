package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
)

// Usage policies across nodes: several gateways on one PostgreSQL schema,
// round-robin load. Credits are never over-spent (leases), and a crashed
// node loses at most what it held; rate windows over-admit at most the
// bound of the limiter's package doc, excess ≤ 2·λ·(T+d).

// nodeCount is how many gateways share the store in these tests.
const nodeCount = 3

// startNodes starts n gateways on one schema serving limitsSite.
func startNodes(t *testing.T, dsn, schema string, n int) []*gateway {
	t.Helper()
	up := costUpstream(t)
	nodes := make([]*gateway, n)
	for i := range nodes {
		nodes[i] = startGateway(t, gatewayConfig{DSN: dsn, Schema: schema, Site: fmt.Sprintf(limitsSite, up)})
	}
	return nodes
}

// loadClient keeps connections to the gateways open across requests, so
// that thousands of requests do not exhaust the loopback's ports.
func loadClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4 * conns
	tr.MaxIdleConnsPerHost = conns
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// outcome is what one request got: its status and error code, or a
// transport error ("conn").
type outcome struct {
	node   int
	status int
	code   string
}

// send makes one GET with the key and reads the answer's status and error
// code.
func send(c *http.Client, url, key string) (int, string, http.Header) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "conn", nil
	}
	req.Header.Set("X-API-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "conn", nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	code := ""
	if resp.StatusCode != http.StatusOK {
		var body struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &body)
		code = body.Error
	}
	return resp.StatusCode, code, resp.Header
}

// tally counts outcomes by "status code" (e.g. "429 usage_exceeded").
type tally map[string]int

func (tl tally) add(o outcome) {
	if o.code == "conn" {
		tl["conn"]++
		return
	}
	tl[fmt.Sprintf("%d %s", o.status, o.code)]++
}

// creditsRemaining reads the key's balance in the store through a
// gateway's admin API.
func creditsRemaining(t *testing.T, gw *gateway, keyID string) int64 {
	t.Helper()
	k := gw.mustAdmin("GET", "/keys/"+keyID, nil, http.StatusOK)
	c, ok := k["credits"].(map[string]any)
	if !ok {
		t.Fatalf("GET /keys/%s has no credits: %v", keyID, k["credits"])
	}
	return int64(c["remaining"].(float64))
}

// creditsRun sends total requests with key over the live nodes, round
// robin, from workers goroutines. When killAt > 0, node kill is killed
// (SIGKILL) once killAt requests were answered, and later requests skip
// it, as a load balancer would.
func creditsRun(t *testing.T, nodes []*gateway, key string, total, workers, killAt, kill int) tally {
	t.Helper()
	c := loadClient(workers)
	defer c.CloseIdleConnections()
	var next, answered atomic.Int64
	var dead atomic.Bool
	var killOnce sync.Once
	out := make(chan outcome, total)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				n := i % len(nodes)
				if dead.Load() && n == kill {
					n = (n + 1) % len(nodes)
				}
				status, code, _ := send(c, nodes[n].URL+"/v1/free", key)
				out <- outcome{node: n, status: status, code: code}
				if killAt > 0 && answered.Add(1) == int64(killAt) {
					killOnce.Do(func() {
						dead.Store(true)
						nodes[kill].kill()
					})
				}
			}
		}()
	}
	wg.Wait()
	close(out)
	tl := tally{}
	for o := range out {
		tl.add(o)
	}
	return tl
}

// TestCreditsAcrossNodes: a key with 1,000 credits and 10,000 concurrent
// requests spread over 3 gateways: exactly 1,000 pass, every other one is
// refused 429 usage_exceeded (never 503: the store is up, so no request
// may be refused as if it were down), and once the gateways stopped
// (returning their unused leases) the store's balance is 0.
func TestCreditsAcrossNodes(t *testing.T) {
	const credits, total, workers = 1000, 10000, 60
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	nodes := startNodes(t, dsn, schema, nodeCount)
	acc := nodes[0].createAccount("metered", "apps")
	keyID, key := nodes[0].createKey(acc, nil, "credits", map[string]any{"remaining": credits})

	start := time.Now()
	tl := creditsRun(t, nodes, key, total, workers, 0, 0)
	t.Logf("%d requests over %d nodes in %v: %v", total, len(nodes), time.Since(start).Round(time.Millisecond), tl)
	if got := tl["200 "]; got != credits {
		t.Errorf("%d requests passed on a key with %d credits, want exactly %d", got, credits, credits)
	}
	if got := tl["429 usage_exceeded"]; got != total-credits {
		t.Errorf("%d requests got 429 usage_exceeded, want %d (all outcomes: %v)", got, total-credits, tl)
	}
	if got := tl["503 unavailable"]; got != 0 {
		t.Errorf("%d requests got 503 unavailable with the store up", got)
	}

	for _, n := range nodes {
		n.stop()
	}
	fresh := startGateway(t, gatewayConfig{DSN: dsn, Schema: schema, Site: "respond ok"})
	if got := creditsRemaining(t, fresh, keyID); got != 0 {
		t.Errorf("after the gateways stopped the store holds %d credits, want 0", got)
	}
}

// leaseBound is the most one node can hold of a balance of credits: a
// lease is at most a quarter of the store's balance when it is granted,
// or the cost of the requests waiting at that node when that is more
// (limiter's nextWant; at most the 60 clients here, far below a quarter
// of 1,000), and the next is asked for when what is held falls below half
// the last lease (its low-water mark), so a node holds at most one lease
// plus a low-water mark: ⌈b/4⌉ + ⌈b/4⌉/2.
func leaseBound(balance int64) int64 {
	lease := (balance + 3) / 4
	return lease + lease/2
}

// TestCreditsAcrossNodesCrash: the same run with one node killed (SIGKILL)
// mid-run: never more than 1,000 requests pass, the store plus what passed
// never exceeds the 1,000 credits, and what went missing is at most what
// the killed node could hold.
func TestCreditsAcrossNodesCrash(t *testing.T) {
	const credits, total, workers = 1000, 10000, 60
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	nodes := startNodes(t, dsn, schema, nodeCount)
	acc := nodes[0].createAccount("metered", "apps")
	keyID, key := nodes[0].createKey(acc, nil, "credits", map[string]any{"remaining": credits})

	// Killed after 500 answers: about half the credits are spent and
	// every node holds a lease.
	tl := creditsRun(t, nodes, key, total, workers, credits/2, 1)
	passed := int64(tl["200 "])
	for i, n := range nodes {
		if i != 1 {
			n.stop()
		}
	}
	fresh := startGateway(t, gatewayConfig{DSN: dsn, Schema: schema, Site: "respond ok"})
	left := creditsRemaining(t, fresh, keyID)
	lost := credits - passed - left
	bound := leaseBound(credits)
	t.Logf("kill -9 of node 2 after %d answers: %d passed, %d left in the store, %d lost with the node (bound %d: lease + low-water mark); outcomes %v",
		credits/2, passed, left, lost, bound, tl)
	if passed > credits {
		t.Errorf("%d requests passed on a key with %d credits", passed, credits)
	}
	if passed+left > credits {
		t.Errorf("over-spent: %d passed and the store still holds %d of %d credits", passed, left, credits)
	}
	if lost > bound {
		t.Errorf("the killed node took %d credits with it, more than a node can hold (%d)", lost, bound)
	}
	for outcome, n := range tl {
		switch outcome {
		case "200 ", "429 usage_exceeded", "503 unavailable", "conn":
		default:
			t.Errorf("%d requests answered %s", n, outcome)
		}
	}
}

// period is what one window-aligned period of a rate window saw.
type period struct{ sent, admitted, refused int }

// windowLoad is the outcome of windowRun.
type windowLoad struct {
	periods map[int64]*period // by start / length
	sent    int
	other   tally // answers neither 200 nor 429 rate_limited
	elapsed time.Duration
	maxRTT  time.Duration // the store's slowest round trip measured meanwhile
}

// windowRun offers rate requests per second with key for dur, round robin
// over nodes, and counts them per window-aligned period of length (a
// request counts in the period of the midpoint of its exchange). Meanwhile
// it measures the store's round trip (SELECT 1 on a connection of its own)
// every 50 ms.
func windowRun(t *testing.T, dsn string, nodes []*gateway, key string, rate float64, dur, length time.Duration) windowLoad {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dur+time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	c := loadClient(32)
	defer c.CloseIdleConnections()
	out := windowLoad{periods: map[int64]*period{}, other: tally{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	done := make(chan struct{})
	go func() { // the store's round trip
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(dur)
		for time.Now().Before(end) {
			<-tick.C
			start := time.Now()
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
				t.Errorf("measuring the store's round trip: %v", err)
				return
			}
			out.maxRTT = max(out.maxRTT, time.Since(start))
		}
	}()
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		// Paced from the start, not from the last tick, so that a slow
		// moment does not lower the offered rate.
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= dur {
			break
		}
		time.Sleep(time.Until(at))
		sem <- struct{}{}
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			defer func() { <-sem }()
			sentAt := time.Now()
			status, code, _ := send(c, nodes[n].URL+"/v1/free", key)
			mid := sentAt.Add(time.Since(sentAt) / 2)
			idx := mid.UnixMicro() / length.Microseconds()
			mu.Lock()
			defer mu.Unlock()
			out.sent++
			p := out.periods[idx]
			if p == nil {
				p = &period{}
				out.periods[idx] = p
			}
			p.sent++
			switch {
			case status == http.StatusOK:
				p.admitted++
			case status == http.StatusTooManyRequests && code == "rate_limited":
				p.refused++
			default:
				out.other.add(outcome{node: n, status: status, code: code})
			}
		}(i % len(nodes))
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	<-done
	return out
}

// checkWindowBound asserts that every window-aligned period admitted at
// most limit + 2·λ·(T+d) (limiter's package doc): λ the offered rate over
// all nodes (the run's, or the period's when higher), T the sync interval
// (250 ms), d the store's round trip (the slowest measured, at least 5 ms).
func checkWindowBound(t *testing.T, load windowLoad, limit int64, length time.Duration) {
	t.Helper()
	const syncInterval = 250 * time.Millisecond
	d := max(load.maxRTT, 5*time.Millisecond)
	rate := float64(load.sent) / load.elapsed.Seconds()
	idx := make([]int64, 0, len(load.periods))
	for i := range load.periods {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		p := load.periods[i]
		lambda := max(rate, float64(p.sent)/length.Seconds())
		bound := 2 * lambda * (syncInterval + d).Seconds()
		t.Logf("period %s: %d sent, %d admitted, %d refused; limit %d + bound %.1f (λ %.1f/s, T %v, d %v)",
			time.UnixMicro(i*length.Microseconds()).UTC().Format("15:04:05"), p.sent, p.admitted, p.refused,
			limit, bound, lambda, syncInterval, d.Round(100*time.Microsecond))
		if float64(p.admitted) > float64(limit)+bound {
			t.Errorf("a period admitted %d, more than the limit %d + the bound %.1f", p.admitted, limit, bound)
		}
	}
	if len(load.other) > 0 {
		t.Errorf("answers other than 200 and 429 rate_limited: %v", load.other)
	}
}

// TestRateWindowAcrossNodes: a window of 30 per 3 s on a key, under
// round-robin load at 6 times its rate over 3 gateways: each window-aligned
// period admits at most the limit plus the bound of the limiter's doc, and
// the window does refuse (the limit is not ignored).
func TestRateWindowAcrossNodes(t *testing.T) {
	const limit, length, rate, dur = 30, 3 * time.Second, 60.0, 10 * time.Second
	dsn := pgtest.DSN(t)
	nodes := startNodes(t, dsn, pgtest.Schema(t, dsn), nodeCount)
	acc := nodes[0].createAccount("limited", "apps")
	_, key := nodes[0].createKey(acc, nil, "limits", []map[string]any{{"name": "burst", "limit": limit, "window": "3s"}})
	load := windowRun(t, dsn, nodes, key, rate, dur, length)
	t.Logf("%d requests in %v over %d nodes (%.1f/s offered; limit %d per %v)", load.sent, load.elapsed.Round(time.Millisecond),
		len(nodes), float64(load.sent)/load.elapsed.Seconds(), limit, length)
	checkWindowBound(t, load, limit, length)
	refused := 0
	for _, p := range load.periods {
		refused += p.refused
	}
	if refused == 0 {
		t.Errorf("no request was refused at 6 times the window's rate")
	}
}

// TestRateWindowAcrossNodesMinute is the case: 600 per minute on 3
// gateways, offered at 20/s (twice the rate) for a little over two
// minutes, so that at least one whole minute is measured. It runs only
// with KEYGATE_LONG_TESTS=1.
func TestRateWindowAcrossNodesMinute(t *testing.T) {
	if os.Getenv("KEYGATE_LONG_TESTS") != "1" {
		t.Skip("a two-minute test: set KEYGATE_LONG_TESTS=1")
	}
	const limit, length, rate, dur = 600, time.Minute, 20.0, 125 * time.Second
	dsn := pgtest.DSN(t)
	nodes := startNodes(t, dsn, pgtest.Schema(t, dsn), nodeCount)
	acc := nodes[0].createAccount("limited", "apps")
	_, key := nodes[0].createKey(acc, nil, "limits", []map[string]any{{"name": "minute", "limit": limit, "window": "1m"}})
	load := windowRun(t, dsn, nodes, key, rate, dur, length)
	checkWindowBound(t, load, limit, length)
	// The figure: at most 606 in every whole minute measured.
	whole := 0
	for _, p := range load.periods {
		if float64(p.sent) < 0.95*rate*length.Seconds() {
			continue // the partial minutes at the run's ends
		}
		whole++
		if p.admitted > 606 {
			t.Errorf("a whole minute admitted %d, more than 606", p.admitted)
		}
	}
	if whole == 0 {
		t.Errorf("no whole minute was measured")
	}
}
