package caddymodule

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/storage/cache"
)

// metrics are package-level so they survive config reloads; each config's
// registry gets them registered again (see registerMetrics).
var metrics = struct {
	decisions         *prometheus.CounterVec
	storeLatency      prometheus.Histogram
	notices           prometheus.Counter
	listenerConnected prometheus.Collector
	cacheCounters     []prometheus.Collector
}{
	decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "apikeys", Name: "decisions_total",
		Help: "Requests decided by apikey_auth, apikey_verify and apikey_admin, by result.",
	}, []string{"result"}),
	storeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "apikeys", Name: "store_query_duration_seconds",
		Help:    "Latency of token lookups in the key store (cache misses).",
		Buckets: storeLatencyBuckets,
	}),
	notices: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "apikeys", Name: "change_notices_total",
		Help: "Change notices received from the key store (from every node).",
	}),
	listenerConnected: listenerGauge{desc: prometheus.NewDesc("caddy_apikeys_listener_connected",
		"1 while the change listener is connected to the key store (only for stores shared by several gateways: PostgreSQL).",
		nil, nil)},
	cacheCounters: []prometheus.Collector{
		cacheCounter("cache_hits_total", "Token verifications answered from the cache.",
			func(s *cache.Stats) uint64 { return s.Hits.Load() }),
		cacheCounter("cache_misses_total", "Token verifications that missed the cache.",
			func(s *cache.Stats) uint64 { return s.Misses.Load() }),
		cacheCounter("store_queries_total", "Token lookups sent to the key store.",
			func(s *cache.Stats) uint64 { return s.StoreQueries.Load() }),
		cacheCounter("store_errors_total", "Token lookups the key store failed to answer.",
			func(s *cache.Stats) uint64 { return s.StoreErrors.Load() }),
		cacheCounter("last_used_flushes_total", "Batched last_used_at writes.",
			func(s *cache.Stats) uint64 { return s.UseFlushes.Load() }),
		cacheCounter("last_used_flush_errors_total", "Batched last_used_at writes that failed.",
			func(s *cache.Stats) uint64 { return s.UseFlushErrors.Load() }),
	},
}

// storeLatencyBuckets resolve both stores' lookups, as measured by
// storage/cache's BenchmarkStoreLookup (3 runs on 2 vCPUs shared with
// other work, PostgreSQL 15 on loopback): the file store answers an
// unknown token in p50 0.7-0.9 µs, p99 6-23 µs, and a known one in p50
// 14-16 µs, p99 74-490 µs; PostgreSQL answers in p50 41-58 µs, p99 0.1-1.3
// ms one caller at a time, and p50 0.2-0.5 ms, p99 3-9 ms with 8 at once;
// the VM's scheduling adds tails of tens to hundreds of ms to both. So
// the buckets start at 5 µs (the file store's negative answers fall below
// it, its positive ones above), step 1-2.5-5 (2.5-10 from 10 ms) through
// the µs and ms where both stores' medians and tails lie, and end at 2.5
// s, above the lookup's own bound (cache.DefaultLookupTimeout, 2 s): an
// outage shows as lookups in the last bucket.
var storeLatencyBuckets = []float64{
	5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 500e-3, 1, 2.5,
}

// liveListeners are the change listeners of the open stores.
var liveListeners sync.Map // *listenerState → struct{}

// listenerGauge is caddy_apikeys_listener_connected: 1 while every open
// store's change listener is connected, 0 while one is not, and absent
// while no open store has a listener (the file store serves one node and
// has none: a 0 there would read as a lost listener).
type listenerGauge struct{ desc *prometheus.Desc }

// Describe implements prometheus.Collector.
func (g listenerGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g listenerGauge) Collect(ch chan<- prometheus.Metric) {
	listeners, connected := false, true
	liveListeners.Range(func(k, _ any) bool {
		listeners = true
		connected = connected && k.(*listenerState).connected.Load()
		return true
	})
	if !listeners {
		return
	}
	v := 0.0
	if connected {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
}

// Decision results, resolved once so that counting costs an atomic add.
var (
	resultAllowed           = metrics.decisions.WithLabelValues("allowed")
	resultPublic            = metrics.decisions.WithLabelValues("public")
	resultUnauthorized      = metrics.decisions.WithLabelValues("unauthorized")
	resultInvalidToken      = metrics.decisions.WithLabelValues("invalid_token")
	resultExpired           = metrics.decisions.WithLabelValues("expired")
	resultDisabled          = metrics.decisions.WithLabelValues("account_disabled")
	resultInvalidRequest    = metrics.decisions.WithLabelValues("invalid_request")
	resultInsufficientScope = metrics.decisions.WithLabelValues("insufficient_scope")
	resultForbidden         = metrics.decisions.WithLabelValues("forbidden")
	resultUnavailable       = metrics.decisions.WithLabelValues("unavailable")
	resultRateLimited       = metrics.decisions.WithLabelValues("rate_limited")
	resultUsageExceeded     = metrics.decisions.WithLabelValues("usage_exceeded")
	resultIPNotAllowed      = metrics.decisions.WithLabelValues("ip_not_allowed")
)

// liveCaches are the open token caches, whose counters the cache
// metrics sum.
var liveCaches sync.Map // *cache.Cache[*verified] → struct{}

func cacheCounter(name, help string, read func(*cache.Stats) uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "apikeys", Name: name, Help: help,
	}, func() float64 {
		var sum uint64
		liveCaches.Range(func(k, _ any) bool {
			sum += read(k.(*cache.Cache[*verified]).Stats())
			return true
		})
		return float64(sum)
	})
}

// observeLookup records one store lookup's latency.
func observeLookup(d time.Duration) { metrics.storeLatency.Observe(d.Seconds()) }

// registerMetrics registers the package's collectors in a config's
// registry; a registry that already has them is fine.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	collectors := append([]prometheus.Collector{
		metrics.decisions, metrics.storeLatency, metrics.notices, metrics.listenerConnected,
	}, metrics.cacheCounters...)
	for _, c := range collectors {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	return nil
}
