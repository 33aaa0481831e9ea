package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/keygate/keygate/storage/cache"
)

// Flood isolation (-flood): does one key flooded far past its rate limit
// slow the other keys down? Other keys send a steady, paced load through
// apikey_auth; in alternate rounds one more key sends floodFactor times
// its limit; in control rounds as many requests carry a malformed key
// instead, refused 401 before any lookup or limiter, so that what the
// refusals cost the gateway's CPU shows apart from any coupling through
// the limiter. Each round reports the other keys' latency percentiles, so
// the rounds of one run compare directly, and the spread of the quiet
// rounds is the A/A noise.

const (
	floodFactor = 20 // the flooded key is offered 20 times its limit
	otherKeys   = 8
	otherRate   = 50 // per other key per second (its limit is 1,000/s)
)

// floodRound is what one round measured.
type floodRound struct {
	kind         string          // quiet, flood or control
	lat          []time.Duration // the other keys' requests
	otherErrors  int             // other keys' requests not answered 200
	flood200     int
	flood429     int
	floodOther   int
	floodOffered int
}

func (r *floodRound) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
}

// flood runs the flood-isolation benchmark.
func (b *bench) flood() error {
	export, tokensFile := filepath.Join(b.dir, "keys.jsonl"), filepath.Join(b.dir, "tokens.txt")
	if _, err := writeKeys(export, tokensFile, 1); err != nil {
		return err
	}
	if err := b.startServers(export); err != nil {
		return err
	}
	if err := b.startCaddy(cache.DefaultMaxEntries); err != nil {
		return err
	}
	var acc struct{ ID string }
	if err := b.admin201("/accounts", map[string]any{"name": "flood", "kind": "service", "scopes": []string{"apps"}}, &acc); err != nil {
		return err
	}
	key := func(name string, limit int) (string, error) {
		var k struct{ Secret string }
		err := b.admin201("/keys", map[string]any{"account": acc.ID, "name": name,
			"limits": []map[string]any{{"name": "rps", "limit": limit, "window": "1s"}}}, &k)
		return k.Secret, err
	}
	flooder, err := key("flooded", b.opts.floodLimit)
	if err != nil {
		return err
	}
	others := make([]string, otherKeys)
	for i := range others {
		if others[i], err = key(fmt.Sprintf("other-%d", i), 1000); err != nil {
			return err
		}
	}
	// The clients on the load CPU, with the upstream; Caddy has CPU 0.
	pin := exec.Command("taskset", "-a", "-cp", "1", strconv.Itoa(os.Getpid()))
	if out, err := pin.CombinedOutput(); err != nil {
		return fmt.Errorf("pinning the load to CPU 1: %v: %s", err, out)
	}
	url := "http://127.0.0.1:" + b.ports["apikey_auth"] + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second}
	log.Printf("warm-up %v", b.opts.warmup)
	b.floodRound(client, url, others, flooder, "flood", b.opts.warmup)
	fmt.Printf("\nother keys: %d × %d/s through apikey_auth (limit 1,000/s each); flooded key: limit %d/s, offered %d/s in flooded rounds; %v rounds\n\n",
		otherKeys, otherRate, b.opts.floodLimit, b.opts.floodLimit*floodFactor, b.opts.duration)
	fmt.Println("| round | extra load | other keys' requests | p50 | p99 | p99.9 | others not 200 | extra 200 / 429 / other |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---|")
	kinds := []string{"quiet", "flood", "control"}
	p99 := map[string][]time.Duration{}
	for i := range len(kinds) * b.opts.rounds {
		kind := kinds[i%len(kinds)]
		r := b.floodRound(client, url, others, flooder, kind, b.opts.duration)
		fmt.Printf("| %d | %s | %d | %v | %v | %v | %d | %d / %d / %d of %d |\n", i+1, kind, len(r.lat),
			r.pct(0.5).Round(time.Microsecond), r.pct(0.99).Round(time.Microsecond), r.pct(0.999).Round(time.Microsecond),
			r.otherErrors, r.flood200, r.flood429, r.floodOther, r.floodOffered)
		p99[kind] = append(p99[kind], r.pct(0.99))
	}
	fmt.Println()
	for _, kind := range kinds {
		ps := p99[kind]
		slices.Sort(ps)
		fmt.Printf("other keys' p99, %s rounds: %v–%v (median %v)\n", kind, ps[0].Round(time.Microsecond),
			ps[len(ps)-1].Round(time.Microsecond), ps[len(ps)/2].Round(time.Microsecond))
	}
	return nil
}

// floodRound paces the other keys' load for d, and the extra load of its
// kind: the flooded key (flood), or a malformed key at the same rate
// (control).
func (b *bench) floodRound(client *http.Client, url string, others []string, flooder string, kind string, d time.Duration) *floodRound {
	r := &floodRound{kind: kind}
	extra := flooder
	if kind == "control" {
		extra = "sk_not_a_valid_token"
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	pace := func(rate int, send func(i int)) {
		defer wg.Done()
		interval := time.Second / time.Duration(rate)
		start := time.Now()
		for i := 0; ; i++ {
			at := start.Add(time.Duration(i) * interval)
			if at.Sub(start) >= d {
				return
			}
			time.Sleep(time.Until(at))
			wg.Add(1)
			go func() { defer wg.Done(); send(i) }()
		}
	}
	wg.Add(1)
	go pace(otherKeys*otherRate, func(i int) {
		start := time.Now()
		status := floodGet(client, url, others[i%len(others)])
		lat := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		r.lat = append(r.lat, lat)
		if status != http.StatusOK {
			r.otherErrors++
		}
	})
	if kind != "quiet" {
		wg.Add(1)
		go pace(b.opts.floodLimit*floodFactor, func(int) {
			status := floodGet(client, url, extra)
			mu.Lock()
			defer mu.Unlock()
			r.floodOffered++
			switch status {
			case http.StatusOK:
				r.flood200++
			case http.StatusTooManyRequests:
				r.flood429++
			default:
				r.floodOther++
			}
		})
	}
	wg.Wait()
	slices.Sort(r.lat)
	return r
}

// floodGet sends one GET with key and returns the status (0 when it
// failed).
func floodGet(client *http.Client, url, key string) int {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("X-API-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// admin201 POSTs body to the admin API's path and decodes its 201 answer
// into out.
func (b *bench) admin201(path string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := http.Post("http://"+b.admin+"/apikeys"+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /apikeys%s: %s: %s", path, resp.Status, answer)
	}
	return json.Unmarshal(answer, out)
}
