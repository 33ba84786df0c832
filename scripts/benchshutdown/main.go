// Command benchshutdown measures an orderly shutdown as a Kubernetes pod
// sees one: the time from SIGTERM to /readyz failing and to the master's
// exit, with each --shutdown-delay given, and what happens to a client that
// keeps sending, a new connection per request, for -lag after the SIGTERM:
// the time Kubernetes takes to remove a terminating pod from its Service's
// endpoints (kubernetes#67592). The master runs examples/hello workers and
// --health on loopback; every process it starts is stopped by PID (package
// benchproc). Run it through scripts/bench-shutdown, which builds what it
// needs.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/loadgen"
	"github.com/hotcluster/hotcluster/scripts/internal/benchproc"
)

// pollEvery is how often /readyz is asked: the resolution of the time to
// its failure.
const pollEvery = 5 * time.Millisecond

type run struct {
	err               error
	toReadyFail       time.Duration // SIGTERM to the first /readyz answer that is not 200
	readyFail         string        // what that answer was
	toExit            time.Duration // SIGTERM to the master's exit
	requests, failed  int           // of the client, SIGTERM to -lag after it included
	afterTerm, failAT int           // of those, the ones that completed after SIGTERM
	errors            map[string]int
}

func main() { os.Exit(mainErr()) }

func mainErr() int {
	hotcluster := flag.String("hotcluster", "", "path of the hotcluster binary (required)")
	hello := flag.String("hello", "", "path of the examples/hello binary (required)")
	delays := flag.String("delays", "0,2s", "comma-separated --shutdown-delay values to measure")
	runs := flag.Int("runs", 3, "runs per delay")
	lag := flag.Duration("lag", time.Second, "how long the client keeps sending after SIGTERM (the endpoints' lag)")
	clients := flag.Int("clients", 4, "concurrent clients, each with a new connection per request")
	workers := flag.Int("workers", 2, "workers of the master")
	logDir := flag.String("logdir", "", "directory for the processes' logs (default: a new temporary directory, kept)")
	out := flag.String("out", "", "also write the Markdown report to this `file`")
	flag.Parse()
	if *hotcluster == "" || *hello == "" {
		fmt.Fprintln(os.Stderr, "benchshutdown: -hotcluster and -hello are required (scripts/bench-shutdown builds them)")
		return 2
	}
	var ds []time.Duration
	for _, s := range strings.Split(*delays, ",") {
		if s == "0" {
			s = "0s"
		}
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			fmt.Fprintf(os.Stderr, "benchshutdown: -delays: %q is not a duration such as 0 or 2s\n", s)
			return 2
		}
		ds = append(ds, d)
	}
	if *runs < 1 || *clients < 1 || *workers < 1 || *lag <= 0 {
		fmt.Fprintln(os.Stderr, "benchshutdown: -runs, -clients, -workers and -lag must be positive")
		return 2
	}
	if *logDir == "" {
		d, err := os.MkdirTemp("", "benchshutdown.")
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchshutdown:", err)
			return 1
		}
		*logDir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var report bytes.Buffer
	fmt.Fprintf(&report, "%d workers (examples/hello), %d clients each opening a new connection per request and sending until %s after SIGTERM; /readyz polled every %s; %d runs per delay; %d CPUs, %s, %s.\n\n",
		*workers, *clients, *lag, pollEvery, *runs, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	tw := tabwriter.NewWriter(&report, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| --shutdown-delay\t SIGTERM → /readyz fails (median, max)\t SIGTERM → master exit (median, min–max)\t failed / total requests\t of them after SIGTERM\t errors\t")
	fmt.Fprintln(tw, "| ---:\t ---:\t ---:\t ---:\t ---:\t ---\t")
	failed := false
	for _, d := range ds {
		var rs []run
		for i := range *runs {
			fmt.Fprintf(os.Stderr, "benchshutdown: --shutdown-delay %s, run %d ...\n", d, i+1)
			r := measure(ctx, *hotcluster, *hello, filepath.Join(*logDir, fmt.Sprintf("%s-%d", d, i+1)), d, *lag, *clients, *workers)
			if r.err != nil {
				fmt.Fprintf(os.Stderr, "benchshutdown: %v\n", r.err)
				failed = true
			}
			rs = append(rs, r)
			if ctx.Err() != nil {
				break
			}
		}
		fmt.Fprintln(tw, row(d, rs))
		if ctx.Err() != nil {
			break
		}
	}
	tw.Flush()
	os.Stdout.Write(report.Bytes())
	if *out != "" {
		if err := os.WriteFile(*out, report.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchshutdown:", err)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

// row sums up the runs of one delay.
func row(d time.Duration, rs []run) string {
	var ready, exit []time.Duration
	var req, fail, after, failAfter int
	errs := make(map[string]int)
	kinds := make(map[string]bool)
	for _, r := range rs {
		if r.err != nil {
			continue
		}
		ready, exit = append(ready, r.toReadyFail), append(exit, r.toExit)
		req, fail, after, failAfter = req+r.requests, fail+r.failed, after+r.afterTerm, failAfter+r.failAT
		for k, v := range r.errors {
			errs[k] += v
		}
		kinds[r.readyFail] = true
	}
	if len(ready) == 0 {
		return fmt.Sprintf("| %s\t every run failed\t\t\t\t\t", d)
	}
	slices.Sort(ready)
	slices.Sort(exit)
	var es []string
	for k, v := range errs {
		es = append(es, fmt.Sprintf("%s ×%d", k, v))
	}
	slices.Sort(es)
	if len(es) == 0 {
		es = []string{"none"}
	}
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return fmt.Sprintf("| %s\t %s, %s (%s)\t %s, %s–%s\t %d / %d\t %d / %d\t %s\t", d,
		ms(ready[len(ready)/2]), ms(ready[len(ready)-1]), strings.Join(ks, ", "),
		ms(exit[len(exit)/2]), ms(exit[0]), ms(exit[len(exit)-1]),
		fail, req, failAfter, after, strings.Join(es, ", "))
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond)/time.Millisecond)
}

// measure runs one master with delay d until it has exited after SIGTERM.
func measure(ctx context.Context, hotcluster, hello, dir string, d, lag time.Duration, clients, workers int) (r run) {
	if r.err = os.MkdirAll(dir, 0o700); r.err != nil {
		return r
	}
	port, err1 := benchproc.FreePort()
	hport, err2 := benchproc.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		r.err = err
		return r
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	health := "http://127.0.0.1:" + strconv.Itoa(hport) + "/readyz"
	sock := filepath.Join(dir, "ctl.sock")
	argv := []string{hotcluster, "run", "--name", "benchshutdown", "--control", sock, "--config", "",
		"--listen", "web=" + addr, "--health", "127.0.0.1:" + strconv.Itoa(hport),
		"--workers", strconv.Itoa(workers), "--shutdown-delay", d.String(), "--", hello}
	master, err := benchproc.Start("master", dir, "", argv)
	if err != nil {
		r.err = err
		return r
	}
	exited := make(chan time.Time, 1)
	go func() { <-master.Done; exited <- time.Now() }()
	// The master is stopped by SIGTERM below; this is for the error paths,
	// and a no-op once it has exited.
	defer master.Stop(30 * time.Second)
	if err := waitReady(ctx, sock, health, master, workers); err != nil {
		r.err = err
		return r
	}

	// The client: from before SIGTERM until lag after it.
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	loaded := make(chan *loadgen.Result, 1)
	go func() {
		res, err := loadgen.Run(lctx, loadgen.Config{Addr: addr, Clients: clients, Duration: time.Minute, Timeout: 5 * time.Second})
		if err != nil {
			res = &loadgen.Result{Errors: map[string]int{err.Error(): 1}, Failures: 1}
		}
		loaded <- res
	}()
	// Some requests before the signal, so that the client runs at full rate.
	warm := time.NewTimer(500 * time.Millisecond)
	select {
	case <-warm.C:
	case <-ctx.Done():
		r.err = ctx.Err()
		return r
	}

	// /readyz, asked on a new connection each time from SIGTERM on.
	type readyFail struct {
		at   time.Time
		what string
	}
	failedAt := make(chan readyFail, 1)
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for pctx.Err() == nil {
			resp, err := hc.Get(health)
			switch {
			case err != nil:
				failedAt <- readyFail{time.Now(), "refused"}
				return
			case resp.StatusCode != http.StatusOK:
				resp.Body.Close()
				failedAt <- readyFail{time.Now(), strconv.Itoa(resp.StatusCode)}
				return
			}
			resp.Body.Close()
			select {
			case <-tick.C:
			case <-pctx.Done():
			}
		}
	}()

	t0 := time.Now()
	if err := syscall.Kill(master.PID(), syscall.SIGTERM); err != nil {
		r.err = fmt.Errorf("sigterm: %w", err)
		return r
	}
	master.Stopped = true
	lagEnd := time.NewTimer(lag)
	defer lagEnd.Stop()
	deadline := time.NewTimer(d + time.Minute)
	defer deadline.Stop()
	var gotReady, gotExit, gotLag bool
	for !gotReady || !gotExit || !gotLag {
		select {
		case f := <-failedAt:
			r.toReadyFail, r.readyFail, gotReady = f.at.Sub(t0), f.what, true
		case at := <-exited:
			r.toExit, gotExit = at.Sub(t0), true
		case <-lagEnd.C:
			lcancel()
			gotLag = true
		case <-deadline.C:
			r.err = fmt.Errorf("delay %s: master not gone %s after SIGTERM (readyz failed %v, exited %v)\n%s", d, d+time.Minute, gotReady, gotExit, master.LogTail(15))
			return r
		}
	}
	if master.WaitErr != nil {
		r.err = fmt.Errorf("master after SIGTERM: %s\n%s", benchproc.DescribeExit(master.WaitErr), master.LogTail(15))
	}
	res := <-loaded
	r.requests, r.failed, r.errors = res.Requests, res.Failures, res.Errors
	// Round trips are bucketed by when they completed.
	for i, b := range res.Timeline {
		if res.Start.Add(time.Duration(i+1) * loadgen.BucketWidth).After(t0) {
			r.afterTerm += b.Successes + b.Failures
			r.failAT += b.Failures
		}
	}
	return r
}

// waitReady waits until the master at sock serves with all its workers and
// /readyz answers 200, at most a minute.
func waitReady(ctx context.Context, sock, health string, master *benchproc.Proc, workers int) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if err := master.Exited(); err != nil {
			return fmt.Errorf("master: %w", err)
		}
		var st control.Status
		if err := control.Call(ctx, sock, control.Request{Cmd: control.CmdStatus}, &st); err == nil && st.State == "serving" && len(st.Workers) == workers {
			if resp, err := http.Get(health); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("master not ready within a minute")
}
