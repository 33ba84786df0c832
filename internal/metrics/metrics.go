package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Reload outcomes for [Metrics.Reload].
const (
	// OutcomeReady is a reload whose new generation became ready and took
	// over.
	OutcomeReady = "ready"
	// OutcomeFailed is a reload abandoned with the old generation still
	// serving.
	OutcomeFailed = "failed"
)

// ReloadBuckets are the upper bounds, in seconds, of the reload duration
// histogram: a worker that starts in tens of milliseconds up to one that
// warms caches for the better part of a minute.
var ReloadBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}

// Metrics holds the master's metrics. Its methods are safe to call from
// several goroutines at once.
type Metrics struct {
	reg        *prometheus.Registry
	restarts   prometheus.Counter
	recycles   prometheus.Counter
	reloads    *prometheus.CounterVec
	reloadTime prometheus.Histogram
}

// New returns the master's metrics in a fresh registry. snapshot is called
// once per scrape, from the goroutine serving it, so it may be called from
// several goroutines at once; it must return promptly and must not keep the
// returned Workers slice after returning it.
func New(snapshot func() Snapshot) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hotcluster_worker_restarts_total",
			Help: "Serving workers that died and were respawned.",
		}),
		recycles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hotcluster_worker_recycles_total",
			Help: "Workers replaced because they used too much memory.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotcluster_reloads_total",
			Help: "Reloads by outcome: ready (the new generation took over) or failed.",
		}, []string{"outcome"}),
		reloadTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hotcluster_reload_duration_seconds",
			Help:    "Time from the start of a reload to its outcome.",
			Buckets: ReloadBuckets,
		}),
	}
	// A counter that has never moved must still be exported as 0, or
	// rate() and alerts on it see nothing until the first failure.
	for _, o := range []string{OutcomeReady, OutcomeFailed} {
		m.reloads.WithLabelValues(o)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.restarts, m.recycles, m.reloads, m.reloadTime,
		newPoolCollector(snapshot),
	)
	return m
}

// Restart counts a serving worker that died and was respawned.
func (m *Metrics) Restart() { m.restarts.Inc() }

// Recycle counts a worker replaced because it used too much memory.
func (m *Metrics) Recycle() { m.recycles.Inc() }

// Reload records the end of a reload: outcome is [OutcomeReady] or
// [OutcomeFailed], took the time from its start. Any other outcome becomes
// a label value of its own, so pass only these constants.
func (m *Metrics) Reload(outcome string, took time.Duration) {
	m.reloads.WithLabelValues(outcome).Inc()
	m.reloadTime.Observe(took.Seconds())
}

// Handler returns the HTTP handler that serves the metrics in the Prometheus
// text or protobuf format, whichever the scraper asks for, at any path. A
// metric that cannot be collected is left out and the rest still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		// Bounds the work a flood of scrapes can cause: each calls the
		// snapshot function, which asks the supervisor.
		MaxRequestsInFlight: 4,
	})
}
