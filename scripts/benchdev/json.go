package main

import (
	"fmt"
	"time"

	"github.com/hotcluster/hotcluster/scripts/internal/benchjson"
)

// writeJSON writes the results, with the timelines of the loads, to path.
func (r *report) writeJSON(path string) error {
	j := benchjson.Report{
		Driver: "benchdev", Date: r.started.UTC().Format(time.RFC3339), Machine: r.machine,
		Command: r.command, Settings: benchjson.FlagSettings("out", "json", "command", "logdir", "hotcluster", "air"), Interrupted: r.interrupted,
	}
	for _, o := range r.outcomes {
		s := benchjson.Scenario{
			Key: "dev-" + o.sc.name, Kind: "dev", Label: "dev loop, " + o.sc.label(), Connections: "new per request",
			Clients: r.bench.clients, EventName: "edit",
		}
		if o.err != nil {
			s.Error = o.err.Error()
		}
		if o.load != nil {
			s.SetLoad(o.load)
			for _, e := range o.edits {
				if e.wrote.IsZero() {
					continue
				}
				s.EventsMs = append(s.EventsMs, benchjson.Ms(e.wrote.Sub(o.load.Start)))
				lat := e.latency
				if e.err != nil || lat <= 0 {
					lat = -1
				}
				s.AnswerMs = append(s.AnswerMs, benchjson.Ms(lat))
				s.BuildMs = append(s.BuildMs, benchjson.Ms(e.build))
			}
		}
		j.Scenarios = append(j.Scenarios, s)
		if o.stopErr != nil {
			j.Errors = append(j.Errors, fmt.Sprintf("%s, on stop: %v", o.sc.label(), o.stopErr))
		}
	}
	return j.Write(path)
}
