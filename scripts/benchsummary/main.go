// Command benchsummary reads the JSON results of the benchmark drivers
// (scripts/benchreload, scripts/benchdev; see scripts/internal/benchjson),
// prints one Markdown summary table, writes the results together as one
// JSON document and draws the charts: the latency over time of each load,
// with its reloads (upgrades, edits) marked, and the failed requests per
// scenario. scripts/bench runs it after the drivers.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hotcluster/hotcluster/scripts/internal/benchjson"
)

// combined is the JSON document benchsummary writes.
type combined struct {
	Command string              `json:"command"`
	Date    string              `json:"date"`
	Machine string              `json:"machine"`
	Load    string              `json:"load,omitempty"` // the machine's load average before the run
	Charts  []string            `json:"charts,omitempty"`
	Runs    []*benchjson.Report `json:"runs"`
}

type inputs []string

func (i *inputs) String() string     { return strings.Join(*i, ",") }
func (i *inputs) Set(v string) error { *i = append(*i, v); return nil }

func main() { os.Exit(run()) }

func run() int {
	var (
		in      inputs
		jsonOut = flag.String("json", "", "write every result as one JSON document to this `file`")
		charts  = flag.String("charts", "", "draw the charts (PNG) into this `directory`")
		command = flag.String("command", "", "command line to print")
		load    = flag.String("load", "", "the machine's load before the run, to print (for example /proc/loadavg)")
		prefix  = flag.String("link-prefix", "", "prefix of the chart paths in the Markdown (default: the -charts directory)")
	)
	flag.Var(&in, "in", "a driver's JSON `file` (repeatable)")
	flag.Parse()
	if len(in) == 0 {
		fmt.Fprintln(os.Stderr, "benchsummary: no -in file")
		return 2
	}
	c := combined{Command: *command, Load: strings.TrimSpace(*load), Date: time.Now().UTC().Format(time.RFC3339)}
	for _, path := range in {
		r, err := benchjson.Read(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchsummary: %v\n", err)
			return 1
		}
		c.Runs = append(c.Runs, r)
		if c.Machine == "" {
			c.Machine = r.Machine
		}
	}
	failed := false
	if *charts != "" {
		files, err := drawCharts(*charts, c.Runs)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchsummary: %v\n", err)
			failed = true
		}
		c.Charts = files
	}
	link := *prefix
	if link == "" {
		link = *charts
	}
	fmt.Print(summary(&c, link))
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, &c); err != nil {
			fmt.Fprintf(os.Stderr, "benchsummary: %v\n", err)
			failed = true
		}
	}
	for _, r := range c.Runs {
		if r.Interrupted || len(r.Errors) > 0 {
			failed = true
		}
		for _, s := range r.Scenarios {
			if s.Error != "" {
				failed = true
			}
		}
	}
	if failed {
		return 1
	}
	return 0
}
