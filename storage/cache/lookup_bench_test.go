package cache

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/storage/token"
)

// BenchmarkStoreLookup measures what the store_query_duration_seconds
// histogram observes: one Keystore.LookupToken, the call a cache miss
// makes, timed as Cache.read times it. It runs on both stores, for a
// known token and for an unknown one (a negative answer costs the same
// query), one caller at a time and 8 at once, and reports the latency
// percentiles the histogram's buckets must resolve (p50-us … max-us).
func BenchmarkStoreLookup(b *testing.B) {
	for _, st := range storeKinds {
		for _, known := range []bool{true, false} {
			for _, callers := range []int{1, 8} {
				name := st.name + "/known"
				if !known {
					name = st.name + "/unknown"
				}
				if callers > 1 {
					name += "/parallel"
				}
				b.Run(name, func(b *testing.B) {
					s := st.open(b)
					acc := newTestAccount(b, s, "a", "apps")
					_, secret := newTestKey(b, s, acc.ID, nil)
					if !known {
						secret = testTokens.Generate()
					}
					hash := token.Sum(secret)
					var mu sync.Mutex
					took := make([]time.Duration, 0, 1<<16)
					lookup := func() time.Duration {
						start := time.Now()
						_, err := s.LookupToken(context.Background(), hash)
						d := time.Since(start)
						if known && err != nil || !known && err == nil {
							b.Errorf("lookup: %v", err)
						}
						return d
					}
					b.ReportAllocs()
					b.ResetTimer()
					if callers == 1 {
						for b.Loop() {
							took = append(took, lookup())
						}
					} else {
						b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
						b.RunParallel(func(pb *testing.PB) {
							var mine []time.Duration
							for pb.Next() {
								mine = append(mine, lookup())
							}
							mu.Lock()
							took = append(took, mine...)
							mu.Unlock()
						})
					}
					b.StopTimer()
					reportPercentiles(b, took)
				})
			}
		}
	}
}

// reportPercentiles reports the p50, p90, p99, p99.9 and max of took in
// microseconds.
func reportPercentiles(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	at := func(q float64) float64 {
		return float64(took[min(len(took)-1, int(q*float64(len(took))))]) / float64(time.Microsecond)
	}
	b.ReportMetric(at(.5), "p50-us")
	b.ReportMetric(at(.9), "p90-us")
	b.ReportMetric(at(.99), "p99-us")
	b.ReportMetric(at(.999), "p99.9-us")
	b.ReportMetric(float64(took[len(took)-1])/float64(time.Microsecond), "max-us")
}
