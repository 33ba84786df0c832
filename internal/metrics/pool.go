package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Worker states for [Worker.State].
const (
	StateStarting = "starting"
	StateReady    = "ready"
	StateDraining = "draining"
)

// Worker is one worker process as the master sees it at scrape time.
type Worker struct {
	Slot int    // the worker's place in the pool, 0 to size-1
	Gen  uint64 // the generation it was started for
	PID  int    // 0 if there is no process yet; such a worker has no memory or CPU series

	// State is StateStarting, StateReady or StateDraining. Another value is
	// counted in hotcluster_workers under its own label.
	State string

	RSS     uint64        // resident memory in bytes
	CPUTime time.Duration // user plus system CPU time used so far
}

// Snapshot is the pool as the master sees it at scrape time.
type Snapshot struct {
	Generation uint64 // the generation now serving
	Workers    []Worker
	// LogDropped counts the log lines the master dropped because its
	// output was not read (or had gone), since it started.
	LogDropped uint64
	// ErroredSlots counts the worker slots given up after too many
	// restarts (all of them: nothing serves).
	ErroredSlots int
	// Listeners are the steered listeners; each gets a series, 0 included.
	Listeners []Listener
	// Rescue is what the master relays, nil without a listener it
	// rescues connections of (no series then).
	Rescue *Rescue
}

// Rescue is what the master's rescuer has done.
type Rescue struct {
	// Relays are the connections the master relays now.
	Relays int
	// Queued counts the connections taken from a retired socket's accept
	// queue and relayed; Reset those it reset instead (no upstream, a
	// bound reached).
	Queued, Reset uint64
}

// Listener is one of the master's steered listeners.
type Listener struct {
	Name string
	// Foreign counts the sockets not made by hotcluster found on its
	// address.
	Foreign int
}

// poolCollector turns one Snapshot per scrape into metrics, so that they
// describe the pool at the time of the scrape and workers that are gone
// leave no series behind.
type poolCollector struct {
	snapshot func() Snapshot

	workers, generation, rss, cpu, foreign, logDropped, errored *prometheus.Desc
	relays, rescued, rescueResets                               *prometheus.Desc
}

func newPoolCollector(snapshot func() Snapshot) *poolCollector {
	perWorker := []string{"slot", "generation", "pid"}
	return &poolCollector{
		snapshot: snapshot,
		workers: prometheus.NewDesc("hotcluster_workers",
			"Worker processes by state: starting, ready or draining.", []string{"state"}, nil),
		generation: prometheus.NewDesc("hotcluster_generation",
			"The worker generation now serving.", nil, nil),
		rss: prometheus.NewDesc("hotcluster_worker_resident_memory_bytes",
			"Resident memory of a worker process in bytes.", perWorker, nil),
		cpu: prometheus.NewDesc("hotcluster_worker_cpu_seconds_total",
			"User and system CPU time a worker process has used, in seconds.", perWorker, nil),
		foreign: prometheus.NewDesc("hotcluster_foreign_sockets",
			"Sockets not made by hotcluster listening on a listener's address; anything above 0 needs an operator.", []string{"listener"}, nil),
		errored: prometheus.NewDesc("hotcluster_errored_slots",
			"Worker slots given up after too many restarts (--max-restarts); they stay empty until the next reload.", nil, nil),
		logDropped: prometheus.NewDesc("hotcluster_log_lines_dropped_total",
			"Log lines (the master's and its workers') dropped because the master's output was not read or had gone.", nil, nil),
		relays: prometheus.NewDesc("hotcluster_relays",
			"Connections the master relays now to the serving generation.", nil, nil),
		rescued: prometheus.NewDesc("hotcluster_rescued_connections_total",
			"Connections the master relayed to the serving generation instead of letting them fail, by where they were: queue (the accept queue of a socket no generation serves any more).", []string{"from"}, nil),
		rescueResets: prometheus.NewDesc("hotcluster_rescue_resets_total",
			"Connections the master reset where it could not relay them (no upstream could be dialled, or the bound on relays was reached).", nil, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.workers
	ch <- c.generation
	ch <- c.rss
	ch <- c.cpu
	ch <- c.logDropped
	ch <- c.errored
	ch <- c.foreign
	ch <- c.relays
	ch <- c.rescued
	ch <- c.rescueResets
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(s.Generation))
	ch <- prometheus.MustNewConstMetric(c.logDropped, prometheus.CounterValue, float64(s.LogDropped))
	ch <- prometheus.MustNewConstMetric(c.errored, prometheus.GaugeValue, float64(s.ErroredSlots))

	counts := map[string]int{StateStarting: 0, StateReady: 0, StateDraining: 0}
	for _, w := range s.Workers {
		counts[w.State]++
		if w.PID == 0 {
			continue
		}
		labels := []string{strconv.Itoa(w.Slot), strconv.FormatUint(w.Gen, 10), strconv.Itoa(w.PID)}
		ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(w.RSS), labels...)
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, w.CPUTime.Seconds(), labels...)
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(n), state)
	}
	for _, l := range s.Listeners {
		ch <- prometheus.MustNewConstMetric(c.foreign, prometheus.GaugeValue, float64(l.Foreign), l.Name)
	}
	if r := s.Rescue; r != nil {
		ch <- prometheus.MustNewConstMetric(c.relays, prometheus.GaugeValue, float64(r.Relays))
		ch <- prometheus.MustNewConstMetric(c.rescued, prometheus.CounterValue, float64(r.Queued), "queue")
		ch <- prometheus.MustNewConstMetric(c.rescueResets, prometheus.CounterValue, float64(r.Reset))
	}
}
