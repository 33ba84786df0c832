package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/hotcluster/hotcluster/scripts/internal/benchjson"
)

// writeJSON writes the results, with the timelines of the loads, to path.
func (r *report) writeJSON(path string) error {
	j := benchjson.Report{
		Driver: "benchreload", Date: r.started.UTC().Format(time.RFC3339), Machine: r.machine,
		Command: r.command, Settings: benchjson.FlagSettings("out", "json", "command", "logdir", "hotcluster", "hello"), Interrupted: r.interrupted,
	}
	for _, o := range r.reloads {
		s := benchjson.Scenario{
			Key: o.c.key(), Kind: "reload", Label: o.c.short(), Connections: o.c.mode.name,
			Clients: o.c.clients(r.bench), EventName: "SIGHUP",
		}
		if o.c.light {
			s.Kind = "latency"
		}
		if o.err != nil {
			s.Error = o.err.Error()
		}
		if o.res != nil {
			s.SetLoad(o.res)
			s.EventsMs = benchjson.MsList(o.hupAt)
			s.NewGenMs = benchjson.MsList(o.newGen)
			s.OldGoneMs = benchjson.MsList(o.oldGone)
			s.MasterRSSKiB, s.MasterCPULoadPct, s.MasterCPUIdlePct = o.rss, o.cpuLoad, o.cpuIdle
		}
		j.Scenarios = append(j.Scenarios, s)
		if o.stopErr != nil {
			j.Errors = append(j.Errors, fmt.Sprintf("%s, on stop: %v", o.c.label(), o.stopErr))
		}
	}
	for _, o := range r.upgrades {
		s := benchjson.Scenario{
			Key: "upgrade-" + o.mode.short(), Kind: "upgrade", Label: "upgrade (SIGUSR2), " + o.mode.name,
			Connections: o.mode.name, Clients: r.bench.clients, EventName: "SIGUSR2",
		}
		if o.err != nil {
			s.Error = o.err.Error()
		}
		if o.res != nil {
			s.SetLoad(o.res)
			for _, t := range o.sent {
				s.EventsMs = append(s.EventsMs, benchjson.Ms(t.Sub(o.res.Start)))
			}
			s.OldMasterExitMs = benchjson.MsList(o.exits)
		}
		j.Scenarios = append(j.Scenarios, s)
		if o.stopErr != nil {
			j.Errors = append(j.Errors, fmt.Sprintf("upgrades, connections %s, on stop: %v", o.mode.name, o.stopErr))
		}
	}
	for _, row := range r.steady.rows {
		j.Steady = append(j.Steady, benchjson.SteadyRow{
			Connections: row.mode.name, Round: row.round, HotFirst: row.hotFirst,
			HotRPS: row.hot.rps, BareRPS: row.bare.rps, HotFailed: row.hot.failed, BareFailed: row.bare.failed,
		})
	}
	if r.steady.err != nil {
		j.Errors = append(j.Errors, fmt.Sprintf("steady state: %v", r.steady.err))
	}
	if f := r.footprint; f.ran {
		j.Footprint = &benchjson.Footprint{
			RSSKiB: f.rss, HWMKiB: f.hwm, Threads: f.threads, CPUIdlePct: f.cpuIdle,
			IdleMs: benchjson.Ms(r.bench.idleFor),
		}
		if err := errors.Join(f.err, f.stopErr); err != nil {
			j.Footprint.Error = err.Error()
		}
	}
	if r.cleanup != nil {
		j.Errors = append(j.Errors, fmt.Sprintf("cleanup: %v", r.cleanup))
	}
	return j.Write(path)
}
