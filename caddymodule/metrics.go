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
	listenerConnected prometheus.Gauge
	cacheCounters     []prometheus.Collector
}{
	decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "apikeys", Name: "decisions_total",
		Help: "Requests decided by apikey_auth and apikey_admin, by result.",
	}, []string{"result"}),
	storeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "apikeys", Name: "store_query_duration_seconds",
		Help:    "Latency of token lookups in the key store (cache misses).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}),
	notices: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "apikeys", Name: "change_notices_total",
		Help: "Change notices received from the key store (from every node).",
	}),
	listenerConnected: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "apikeys", Name: "listener_connected",
		Help: "1 while the change listener is connected to the key store.",
	}),
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
