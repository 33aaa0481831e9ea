package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/storage/cache"
)

// scale measures memory per cached key, the max_entries bound, and
// throughput with many distinct active keys.
func (b *bench) scale() error {
	export, tokensFile := filepath.Join(b.dir, "keys.jsonl"), filepath.Join(b.dir, "tokens.txt")
	n := max(b.opts.scaleKeys, b.opts.activeKeys)
	tokens, err := writeKeys(export, tokensFile, n)
	if err != nil {
		return err
	}
	if err := b.startServers(export); err != nil {
		return err
	}
	// Room for every key: ristretto admits by frequency once full.
	if err := b.startCaddy(2 * n); err != nil {
		return err
	}
	if err := b.importKeys(export); err != nil {
		return err
	}

	fmt.Printf("\n| cache | keys touched | tokens cached | live heap growth | per cached key | resident (anonymous) growth | per cached key |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, maxEntries := range []int{2 * n, b.opts.bounded} {
		// A fresh process, so the import's garbage is not in the figure.
		b.stop(b.caddy)
		if err := b.startCaddy(maxEntries); err != nil {
			return err
		}
		// The baseline has every client connection open and one token
		// cached; both measurements wait out a last_used_at flush, whose
		// batch holds the tokens used since the previous one.
		if err := b.touch(slices.Repeat(tokens[:1], 1000)); err != nil {
			return err
		}
		time.Sleep(cache.UseFlushInterval + time.Second)
		heap0, rss0, err := b.memory()
		if err != nil {
			return err
		}
		if err := b.touch(tokens[:b.opts.scaleKeys]); err != nil {
			return err
		}
		time.Sleep(cache.UseFlushInterval + time.Second)
		heap1, rss1, err := b.memory()
		if err != nil {
			return err
		}
		// A second pass: every hit is a token the cache holds.
		hits0, err := b.metric("caddy_apikeys_cache_hits_total")
		if err != nil {
			return err
		}
		if err := b.touch(tokens[:b.opts.scaleKeys]); err != nil {
			return err
		}
		hits1, err := b.metric("caddy_apikeys_cache_hits_total")
		if err != nil {
			return err
		}
		cached := int64(hits1 - hits0)
		per := func(v int64) string {
			if cached == 0 {
				return "-"
			}
			return fmt.Sprintf("%d B", v/cached)
		}
		fmt.Printf("| max_entries %d | %d | %d | %.1f MiB | %s | %.1f MiB | %s |\n", maxEntries, b.opts.scaleKeys, cached,
			float64(heap1-heap0)/(1<<20), per(heap1-heap0), float64(rss1-rss0)/(1<<20), per(rss1-rss0))
	}

	// Throughput with many distinct active keys against one key, both
	// through the same wrk script, in alternating rounds.
	b.stop(b.caddy)
	if err := b.startCaddy(2 * n); err != nil {
		return err
	}
	one, many := filepath.Join(b.dir, "one.txt"), filepath.Join(b.dir, "many.txt")
	if err := os.WriteFile(one, []byte(tokens[0]+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(many, []byte(strings.Join(tokens[:b.opts.activeKeys], "\n")+"\n"), 0o600); err != nil {
		return err
	}
	s := site{name: "apikey_auth", duration: b.opts.duration, conns: b.opts.connections}
	if err := b.touch(tokens[:b.opts.activeKeys]); err != nil {
		return err
	}
	var rOne, rMany, ratio []float64
	for _, f := range []string{one, many} {
		if _, err := b.wrk(s, b.opts.warmup, []string{"TOKENS=" + f}); err != nil {
			return err
		}
	}
	for round := range b.opts.rounds {
		a, err := b.wrk(s, s.duration, []string{"TOKENS=" + one})
		if err != nil {
			return err
		}
		m, err := b.wrk(s, s.duration, []string{"TOKENS=" + many})
		if err != nil {
			return err
		}
		log.Printf("round %d: 1 key %.0f req/s, %d keys %.0f req/s", round+1, a.rps, b.opts.activeKeys, m.rps)
		rOne, rMany, ratio = append(rOne, a.rps), append(rMany, m.rps), append(ratio, m.rps/a.rps)
	}
	fmt.Printf("\n| active keys | median req/s | median ratio to 1 key |\n|---:|---:|---:|\n| 1 | %.0f | 1 |\n| %d | %.0f | %.3f |\n",
		median(rOne), b.opts.activeKeys, median(rMany), median(ratio))
	return nil
}

// touch sends one request per token to the apikey_auth site, in parallel,
// and fails on any answer but 200.
func (b *bench) touch(tokens []string) error {
	url := "http://127.0.0.1:" + b.ports["apikey_auth"] + "/"
	client := b.client
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(tokens)); i = next.Add(1) - 1 {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("X-API-Key", tokens[i])
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("token %d: %s", i, resp.Status)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// memory returns Caddy's live heap right after a forced collection, and
// its resident anonymous memory.
func (b *bench) memory() (heap, rss int64, err error) {
	// Asking for a heap profile with gc=1 runs a collection first.
	if err := b.get("/debug/pprof/heap?gc=1", nil); err != nil {
		return 0, 0, err
	}
	var vars struct {
		Memstats struct{ HeapAlloc int64 } `json:"memstats"`
	}
	if err := b.get("/debug/vars", &vars); err != nil {
		return 0, 0, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.caddy.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	// Anonymous memory only: the file store's pages, mapped by bbolt,
	// are page cache the kernel can drop, not memory the cache holds.
	m := regexp.MustCompile(`RssAnon:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		return 0, 0, errors.New("no RssAnon in /proc/<pid>/status")
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return vars.Memstats.HeapAlloc, kb << 10, nil
}

// metric reads one unlabelled sample from Caddy's /metrics.
func (b *bench) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + b.admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// get reads an admin endpoint path, decoding JSON into v when non-nil.
func (b *bench) get(path string, v any) error {
	resp, err := http.Get("http://" + b.admin + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
