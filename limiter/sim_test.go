package limiter

import (
	"cmp"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// simNode is one gateway node of the simulation, its syncs driven by hand.
type simNode struct {
	l        *Limiter
	next     time.Time // next periodic sync
	last     time.Time // last sync started
	kicked   bool
	flight   *batch
	sendAt   time.Time
	doneAt   time.Time
	sent     bool
	counts   []storage.WindowCount
	syncErr  error
	disabled bool // never syncs (the control)
}

type simConfig struct {
	nodes    int
	rate     float64 // requests per second over all nodes, round-robin
	window   storage.Window
	interval time.Duration // T
	latency  time.Duration // d: adds land at d/2, totals applied at d
	duration time.Duration
	tick     time.Duration // the simulation's step; 1 ms when zero
	noSync   bool
}

type simResult struct {
	perPeriod []int64 // admitted per window-aligned period
	offered   int64
	syncs     int
}

// simulate runs nodes over one store on one manual clock, in 1 ms steps:
// deterministic, no goroutines, no sleeps.
func simulate(t *testing.T, cfg simConfig) simResult {
	t.Helper()
	tick := cmp.Or(cfg.tick, time.Millisecond)
	clk := newClock()
	st := newStore()
	start := clk.Now()
	nodes := make([]*simNode, cfg.nodes)
	for i := range nodes {
		l := newTestLimiter(t, st, clk, Options{SyncInterval: cfg.interval})
		phase := time.Duration(int64(cfg.interval) * int64(i) / int64(cfg.nodes))
		nodes[i] = &simNode{l: l, next: start.Add(phase), disabled: cfg.noSync}
	}
	q := keyQuery("key_sim", cfg.window)
	length := int64(cfg.window.Length)
	first := start.UnixNano() - start.UnixNano()%length
	var res simResult
	res.perPeriod = make([]int64, int(cfg.duration/cfg.window.Length)+2)
	var acc float64
	rr := 0
	for now := start; now.Before(start.Add(cfg.duration)); now = clk.Now() {
		for _, n := range nodes {
			if n.flight != nil && !n.sent && !now.Before(n.sendAt) {
				n.counts, n.syncErr = st.SyncWindows(ctx, n.flight.deltas)
				n.sent = true
			}
			if n.flight != nil && n.sent && !now.Before(n.doneAt) {
				n.l.apply(n.flight, n.counts, n.syncErr)
				n.flight = nil
			}
		}
		for acc += cfg.rate * tick.Seconds(); acc >= 1; acc-- {
			n := nodes[rr%len(nodes)]
			rr++
			res.offered++
			if d := n.l.Allow(ctx, q); d.Allowed() {
				res.perPeriod[(now.UnixNano()-first)/length]++
			}
			select {
			case <-n.l.kick:
				n.kicked = true
			default:
			}
		}
		for _, n := range nodes {
			if n.disabled || n.flight != nil {
				continue
			}
			periodic := !now.Before(n.next)
			early := n.kicked && now.Sub(n.last) >= n.l.opt.MinSyncInterval
			if !periodic && !early {
				continue
			}
			if periodic {
				n.next = n.next.Add(cfg.interval)
			}
			n.kicked, n.last = false, now
			n.flight = n.l.prepare(now.UnixNano())
			n.sendAt, n.doneAt, n.sent = now.Add(cfg.latency/2), now.Add(cfg.latency), false
			res.syncs++
		}
		clk.Advance(tick)
	}
	return res
}

// bound is the stated over-admission bound, 2·λ·(T + d).
func bound(cfg simConfig) float64 {
	return 2 * cfg.rate * (cfg.interval + cfg.latency).Seconds()
}

// Several nodes sharing counts through one store admit at most the limit
// plus 2·λ·(T + d) in any window-aligned period, and, overloaded, close to
// the limit (the windows do not starve either).
func TestWindowsAcrossNodesBound(t *testing.T) {
	cases := []struct {
		name string
		cfg  simConfig
	}{
		{"issue: 3 nodes, 600/min, offered at the limit", simConfig{nodes: 3, rate: 10,
			window:   storage.Window{Name: "min", Limit: 600, Length: time.Minute},
			interval: 250 * time.Millisecond, latency: 2 * time.Millisecond, duration: 5 * time.Minute}},
		{"3 nodes, 600/min, offered at 20x", simConfig{nodes: 3, rate: 200,
			window:   storage.Window{Name: "min", Limit: 600, Length: time.Minute},
			interval: 250 * time.Millisecond, latency: 2 * time.Millisecond, duration: 5 * time.Minute}},
		{"5 nodes, 100/s, offered at 10x", simConfig{nodes: 5, rate: 1000,
			window:   storage.Window{Name: "s", Limit: 100, Length: time.Second},
			interval: 250 * time.Millisecond, latency: 10 * time.Millisecond, duration: 20 * time.Second}},
		{"2 nodes, 1000/h, 1 s sync, offered at 4x", simConfig{nodes: 2, rate: 4000.0 / 3600,
			window:   storage.Window{Name: "h", Limit: 1000, Length: time.Hour},
			interval: time.Second, latency: 20 * time.Millisecond, duration: 3 * time.Hour, tick: 10 * time.Millisecond}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := simulate(t, c.cfg)
			limit := c.cfg.window.Limit
			b := bound(c.cfg)
			full := int(c.cfg.duration / c.cfg.window.Length) // whole periods run
			var worst int64
			for i, got := range res.perPeriod[:full] {
				worst = max(worst, got)
				if float64(got) > float64(limit)+b {
					t.Errorf("period %d admitted %d, over the bound %d + %.2f", i, got, limit, b)
				}
				// The offered load fills every period after the first.
				offered := c.cfg.rate * c.cfg.window.Length.Seconds()
				if i > 0 && offered >= float64(limit) && got < limit-limit/20 {
					t.Errorf("period %d admitted %d of a limit %d with %.0f offered: the windows starve", i, got, limit, offered)
				}
			}
			t.Logf("worst period %d of limit %d (bound %d + %.2f), %d syncs", worst, limit, limit, b, res.syncs)
		})
	}
}

// The control: nodes that never share counts admit about N times the
// limit, which the bound check above would catch.
func TestWindowsAcrossNodesControl(t *testing.T) {
	cfg := simConfig{nodes: 3, rate: 200, window: storage.Window{Name: "min", Limit: 600, Length: time.Minute},
		interval: 250 * time.Millisecond, latency: 2 * time.Millisecond, duration: time.Minute, noSync: true}
	res := simulate(t, cfg)
	if got := res.perPeriod[0]; float64(got) <= float64(cfg.window.Limit)+bound(cfg) {
		t.Fatalf("unsynced nodes admitted %d, within the bound: the simulation shows nothing", got)
	}
}

// With the store down each node goes on deciding with its own counts
// (fail open: at most N × the limit); when the store is back the counts
// it missed are sent.
func TestWindowsStoreDown(t *testing.T) {
	clk := newClock()
	st := newStore()
	win := storage.Window{Name: "min", Limit: 50, Length: time.Minute}
	q := keyQuery("key_a", win)
	nodes := []*Limiter{newTestLimiter(t, st, clk, Options{}), newTestLimiter(t, st, clk, Options{})}
	st.setDown(true)
	var admitted int64
	for range 3 {
		for _, l := range nodes {
			for range 30 {
				if d := l.Allow(ctx, q); d.Allowed() {
					admitted++
				}
			}
			if err := l.Sync(ctx); err == nil {
				t.Fatal("Sync with the store down reported no error")
			}
		}
		clk.Advance(time.Second)
	}
	if admitted != 2*win.Limit {
		t.Fatalf("with the store down 2 nodes admitted %d, want each its own limit: %d", admitted, 2*win.Limit)
	}
	st.setDown(false)
	for _, l := range nodes {
		if err := l.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	start := clk.Now().Truncate(time.Minute)
	if got := st.count("key_a", "min", start); got != admitted {
		t.Fatalf("store counts %d after recovery, want the %d admitted while it was down", got, admitted)
	}
	// A decision on node 0 has it hear the total at its next sync.
	if d := nodes[0].Allow(ctx, q); d.Allowed() {
		t.Fatal("node 0 admitted past its own count of the limit")
	}
	if err := nodes[0].Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := globalCount(nodes[0], "key_a", "min"); got != admitted {
		t.Fatalf("node 0 holds a total of %d after recovery, want %d", got, admitted)
	}
}

// globalCount is the total across nodes a limiter last heard for a window.
func globalCount(l *Limiter, id, name string) int64 {
	v, ok := l.subjects.Load(id)
	if !ok {
		return -1
	}
	s := v.(*subject)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.windows {
		if w.name == name {
			return w.cur.global
		}
	}
	return -1
}
