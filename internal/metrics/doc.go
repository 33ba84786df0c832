// Package metrics exposes the master's state to Prometheus: how many workers
// are in each state, which generation serves, each worker's memory and CPU
// time, and counters of restarts, reloads and recycles.
//
// The invariant: worker gauges are never stale. They are not stored here but
// built at scrape time from the [Snapshot] the function given to [New]
// returns, so a scrape sees exactly the workers the master had when it was
// asked. Counters and the reload histogram are the only state kept, and the
// master feeds them through [Metrics.Restart], [Metrics.Reload] and
// [Metrics.Recycle] as events happen.
//
// The package imports nothing else of hotcluster: it takes plain data in.
// Metrics live in a registry of their own, not prometheus.DefaultRegisterer,
// together with the Go runtime and process collectors for the master itself.
//
// # Exposed series
//
//	hotcluster_workers{state}                    gauge; state is starting, ready or draining, all three always present
//	hotcluster_generation                        gauge; the generation now serving
//	hotcluster_worker_resident_memory_bytes{slot,generation,pid}  gauge
//	hotcluster_worker_cpu_seconds_total{slot,generation,pid}      counter
//	hotcluster_worker_restarts_total             counter; serving workers that died and were respawned
//	hotcluster_worker_recycles_total             counter; workers replaced for using too much memory
//	hotcluster_reloads_total{outcome}            counter; outcome is ready or failed, both always present
//	hotcluster_reload_duration_seconds           histogram; 10ms to 60s
//
// A worker's series carry its pid, so each restart or reload starts new
// series; Prometheus marks the old ones stale after the next scrape.
//
// # Running under systemd
//
// [Serve] needs a listener, which the master opens (or receives through
// socket activation) like any other; scrape it on loopback or behind a proxy,
// as the figures are not secret but the endpoint has no authentication.
package metrics
