package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/hotcluster/hotcluster/scripts/internal/benchjson"
)

var (
	colP50    = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colP99    = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	colMax    = color.RGBA{R: 150, G: 150, B: 150, A: 255}
	colEvent  = color.RGBA{R: 90, G: 90, B: 90, A: 255}
	colFailed = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	colOK     = color.RGBA{R: 44, G: 160, B: 44, A: 255}
)

// drawCharts writes latency-KEY.png for every scenario with a timeline and
// failures.png, and returns their paths.
func drawCharts(dir string, runs []*benchjson.Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	var errs []error
	var all []benchjson.Scenario
	for _, r := range runs {
		for _, s := range r.Scenarios {
			all = append(all, s)
			if len(s.Timeline) == 0 {
				continue
			}
			f := filepath.Join(dir, "latency-"+s.Key+".png")
			if err := latencyChart(f, &s); err != nil {
				errs = append(errs, fmt.Errorf("chart %s: %w", f, err))
				continue
			}
			files = append(files, f)
		}
	}
	if len(all) > 0 {
		f := filepath.Join(dir, "failures.png")
		if err := failuresChart(f, all); err != nil {
			errs = append(errs, fmt.Errorf("chart %s: %w", f, err))
		} else {
			files = append(files, f)
		}
	}
	return files, errors.Join(errs...)
}

// latencyChart draws p50, p99 and max latency per 100ms bucket over the
// load, on a log scale, a dashed vertical line at each event, and a red mark
// above each bucket with failed requests.
func latencyChart(file string, s *benchjson.Scenario) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: latency per 100 ms (%d clients)", s.Label, s.Clients)
	p.X.Label.Text = "time since the load started (s)"
	p.Y.Label.Text = "latency of successful requests (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())

	lo, hi := math.Inf(1), 0.0
	series := func(get func(benchjson.Point) float64) plotter.XYs {
		var xys plotter.XYs
		for _, pt := range s.Timeline {
			if pt.OK == 0 {
				continue
			}
			v := get(pt)
			if v <= 0 {
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
			xys = append(xys, plotter.XY{X: (pt.TMs + 50) / 1000, Y: v})
		}
		return xys
	}
	type line struct {
		name  string
		col   color.Color
		width vg.Length
		get   func(benchjson.Point) float64
	}
	lines := []line{
		{"max", colMax, 1, func(pt benchjson.Point) float64 { return pt.MaxMs }},
		{"p99", colP99, 1.5, func(pt benchjson.Point) float64 { return pt.P99Ms }},
		{"p50", colP50, 1.5, func(pt benchjson.Point) float64 { return pt.P50Ms }},
	}
	var drawn []*plotter.Line
	for _, l := range lines {
		xys := series(l.get)
		if len(xys) == 0 {
			continue
		}
		pl, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		pl.Color, pl.Width = l.col, vg.Points(float64(l.width))
		p.Add(pl)
		drawn = append(drawn, pl)
	}
	if hi == 0 {
		lo, hi = 0.1, 1
	}
	lo, hi = lo/1.5, hi*3 // room for the failure marks at the top
	p.Y.Min, p.Y.Max = lo, hi
	p.X.Min = 0
	if n := len(s.Timeline); n > 0 {
		p.X.Max = (s.Timeline[n-1].TMs + 100) / 1000
	}

	var first *plotter.Line
	for _, at := range s.EventsMs {
		ev, err := plotter.NewLine(plotter.XYs{{X: at / 1000, Y: lo}, {X: at / 1000, Y: hi}})
		if err != nil {
			return err
		}
		ev.Color, ev.Width = colEvent, vg.Points(0.8)
		ev.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(ev)
		if first == nil {
			first = ev
		}
	}
	for i := len(drawn) - 1; i >= 0; i-- {
		p.Legend.Add(lines[len(lines)-len(drawn)+i].name, drawn[i])
	}
	if first != nil {
		p.Legend.Add(s.EventName, first)
	}

	var fails plotter.XYs
	total := 0
	for _, pt := range s.Timeline {
		if pt.Failed > 0 {
			fails = append(fails, plotter.XY{X: (pt.TMs + 50) / 1000, Y: hi / 1.4})
			total += pt.Failed
		}
	}
	if len(fails) > 0 {
		sc, err := plotter.NewScatter(fails)
		if err != nil {
			return err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: colFailed, Radius: vg.Points(3.5), Shape: draw.PyramidGlyph{}}
		p.Add(sc)
		p.Legend.Add(fmt.Sprintf("100 ms with failed requests (%d failed in all)", total), sc)
	} else {
		p.Title.Text += ", no failed request"
	}
	p.Legend.Top = true
	return p.Save(30*vg.Centimeter, 12*vg.Centimeter, file)
}

// failuresChart draws one horizontal bar per scenario: its failed requests,
// labelled with the count and the share of all its requests.
func failuresChart(file string, all []benchjson.Scenario) error {
	p := plot.New()
	p.Title.Text = "Failed requests per scenario (a failed round trip is never retried)"
	p.X.Label.Text = "failed requests"
	n := len(all)
	names := make([]string, n)
	vals := make(plotter.Values, n)
	var labels plotter.XYLabels
	top := 0.0
	for i, s := range all {
		// The first scenario at the top.
		j := n - 1 - i
		names[j] = s.Label
		if s.Clients > 1 {
			names[j] += fmt.Sprintf(" (%d clients)", s.Clients)
		}
		vals[j] = float64(s.Failed)
		top = math.Max(top, vals[j])
		text := fmt.Sprintf("%d of %d", s.Failed, s.Requests)
		if s.Failed > 0 {
			text += fmt.Sprintf(" (%.2f %%)", 100*float64(s.Failed)/float64(max(s.Requests, 1)))
		}
		if s.Error != "" {
			text += " (error)"
		}
		labels.XYs = append(labels.XYs, plotter.XY{X: vals[j], Y: float64(j)})
		labels.Labels = append(labels.Labels, text)
	}
	top = math.Max(top, 10)
	okVals, badVals := make(plotter.Values, n), make(plotter.Values, n)
	for j, v := range vals {
		if v == 0 {
			okVals[j] = top / 200 // a sliver, so that zero shows
		} else {
			badVals[j] = v
		}
	}
	w := vg.Points(14)
	for _, b := range []struct {
		v   plotter.Values
		col color.Color
	}{{okVals, colOK}, {badVals, colFailed}} {
		bc, err := plotter.NewBarChart(b.v, w)
		if err != nil {
			return err
		}
		bc.Horizontal = true
		bc.Color = b.col
		bc.LineStyle.Width = 0
		p.Add(bc)
	}
	for i := range labels.XYs {
		labels.XYs[i].X += top / 100
	}
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].YAlign = -0.5
	}
	p.Add(lb)
	p.NominalY(names...)
	p.X.Min, p.X.Max = 0, top*1.45
	return p.Save(30*vg.Centimeter, vg.Length(n)*0.8*vg.Centimeter+3*vg.Centimeter, file)
}
