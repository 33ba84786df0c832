// Command benchlogs measures what a worker that prints a lot costs the
// master: its CPU and memory while one worker (examples/hello -log-rate)
// prints a given number of lines a second, with the master's output to a
// file as `hotcluster run … > app.log 2>&1` makes it, to a rotated
// --log-file, as JSON, and with a `hotcluster logs -f` attached; and how
// many of the lines came out. Everything runs on loopback; every process it
// starts is stopped by PID (package benchproc). Run it through
// scripts/bench-logs, which builds what it needs.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hotcluster/hotcluster/internal/control"
	"github.com/hotcluster/hotcluster/internal/procstat"
	"github.com/hotcluster/hotcluster/scripts/internal/benchproc"
)

type scenario struct {
	name   string
	flags  []string // for hotcluster run
	file   bool     // --log-file in the log directory
	follow bool     // a hotcluster logs -f attached
}

var scenarios = []scenario{
	{name: "text to a file (> app.log 2>&1)"},
	{name: "--log-file, rotated at 100M", file: true},
	{name: "--log-format json to a file", flags: []string{"--log-format", "json"}},
	{name: "text to a file, logs -f attached", follow: true},
}

type result struct {
	sc                  scenario
	err                 error
	took                time.Duration
	cpu, workerCPU      float64 // percent of one CPU
	rssMax, hwm, rssEnd uint64  // bytes
	printed, written    int64   // lines the worker printed, and came out
	followed, fdropped  int64   // lines logs -f printed, and was told it lost
	dropped             uint64  // what status counts
	bufLines            int
	bufBytes            int64
}

func main() { os.Exit(run()) }

func run() int {
	hotcluster := flag.String("hotcluster", "", "path of the hotcluster binary (required)")
	hello := flag.String("hello", "", "path of the examples/hello binary (required)")
	rate := flag.Int("rate", 100000, "lines a second the worker prints")
	duration := flag.Duration("duration", 20*time.Second, "how long it prints, measured")
	logDir := flag.String("logdir", "", "directory for the processes' logs (default: a new temporary directory, kept)")
	out := flag.String("out", "", "also write the Markdown report to this `file`")
	only := flag.String("scenarios", "", "comma-separated numbers of the scenarios to run, from 1 (default: all)")
	flag.Parse()
	if *hotcluster == "" || *hello == "" {
		fmt.Fprintln(os.Stderr, "benchlogs: -hotcluster and -hello are required (scripts/bench-logs builds them)")
		return 2
	}
	if *logDir == "" {
		d, err := os.MkdirTemp("", "benchlogs.")
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchlogs:", err)
			return 1
		}
		*logDir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []result
	for i, sc := range scenarios {
		if *only != "" && !strings.Contains(","+*only+",", ","+strconv.Itoa(i+1)+",") {
			continue
		}
		fmt.Fprintf(os.Stderr, "benchlogs: %s ...\n", sc.name)
		r := measure(ctx, sc, *hotcluster, *hello, filepath.Join(*logDir, strconv.Itoa(i+1)), *rate, *duration)
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	var report bytes.Buffer
	fmt.Fprintf(&report, "One worker printing %d lines/s (about 100 bytes each) for %s; %d CPUs, %s, %s.\n\n",
		*rate, *duration, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	tw := tabwriter.NewWriter(&report, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| output\t master CPU\t master RSS max / end (peak)\t worker CPU\t lines printed\t written\t dropped (status)\t logs -f printed\t buffer\t")
	fmt.Fprintln(tw, "| ---\t ---:\t ---:\t ---:\t ---:\t ---:\t ---:\t ---:\t ---:\t")
	failed := false
	for _, r := range results {
		if r.err != nil {
			failed = true
			fmt.Fprintf(tw, "| %s\t error: %v\t\t\t\t\t\t\t\t\n", r.sc.name, r.err)
			continue
		}
		follow := "-"
		if r.sc.follow {
			follow = fmt.Sprintf("%d (%d dropped)", r.followed, r.fdropped)
		}
		fmt.Fprintf(tw, "| %s\t %.1f%%\t %s / %s (%s)\t %.1f%%\t %d\t %d\t %d\t %s\t %d lines, %s\t\n", r.sc.name, r.cpu,
			mib(r.rssMax), mib(r.rssEnd), mib(r.hwm), r.workerCPU, r.printed, r.written, r.dropped, follow, r.bufLines, mib(uint64(r.bufBytes)))
	}
	tw.Flush()
	os.Stdout.Write(report.Bytes())
	if *out != "" {
		if err := os.WriteFile(*out, report.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchlogs:", err)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// measure runs one scenario: a master with one hello printing rate lines a
// second, measured over duration once it serves.
func measure(ctx context.Context, sc scenario, hotcluster, hello, dir string, rate int, duration time.Duration) (r result) {
	r.sc = sc
	if r.err = os.MkdirAll(dir, 0o700); r.err != nil {
		return r
	}
	port, err := benchproc.FreePort()
	if err != nil {
		r.err = err
		return r
	}
	sock := filepath.Join(dir, "ctl.sock")
	argv := []string{hotcluster, "run", "--name", "benchlogs", "--control", sock, "--listen", "web=127.0.0.1:" + strconv.Itoa(port),
		"--workers", "1", "--ready", "notify"}
	argv = append(argv, sc.flags...)
	if sc.file {
		argv = append(argv, "--log-file", filepath.Join(dir, "app.log"))
	}
	argv = append(argv, "--", hello, "-log-rate", strconv.Itoa(rate))
	master, err := benchproc.Start("master", dir, "", argv)
	if err != nil {
		r.err = err
		return r
	}
	defer func() {
		if err := master.Stop(30 * time.Second); err != nil && r.err == nil {
			r.err = err
		}
	}()
	st, err := waitServing(ctx, sock, master)
	if err != nil {
		r.err = err
		return r
	}
	worker := st.Workers[0].PID
	var follower *benchproc.Proc
	if sc.follow {
		if follower, err = benchproc.Start("logs-f", dir, "", []string{hotcluster, "logs", "-f", "-n", "0", "--control", sock}); err != nil {
			r.err = err
			return r
		}
		defer follower.Stop(10 * time.Second)
	}
	m0, err := procstat.Read(master.PID())
	if err != nil {
		r.err = err
		return r
	}
	w0, err := procstat.Read(worker)
	if err != nil {
		r.err = err
		return r
	}
	written0, last0 := countLines(dir, "log line ")
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	for time.Since(start) < duration && ctx.Err() == nil {
		<-tick.C
		s, err := procstat.Read(master.PID())
		if err != nil {
			r.err = fmt.Errorf("master: %w", err)
			tick.Stop()
			return r
		}
		r.rssMax = max(r.rssMax, s.RSS)
	}
	tick.Stop()
	m1, err1 := procstat.Read(master.PID())
	w1, err2 := procstat.Read(worker)
	if err := errors.Join(err1, err2); err != nil {
		r.err = err
		return r
	}
	r.took = m1.At.Sub(m0.At)
	r.cpu = 100 * float64(m1.CPUTime-m0.CPUTime) / float64(r.took)
	r.workerCPU = 100 * float64(w1.CPUTime-w0.CPUTime) / float64(w1.At.Sub(w0.At))
	r.rssEnd = m1.RSS
	r.hwm = hwm(master.PID())
	// Freeze the worker, so that what it printed in the window can be
	// counted once the master has written it out.
	syscall.Kill(worker, syscall.SIGSTOP)
	defer syscall.Kill(worker, syscall.SIGCONT)
	settle(dir)
	var end control.Status
	if err := control.Call(ctx, sock, control.Request{Cmd: control.CmdStatus}, &end); err != nil {
		r.err = err
		return r
	}
	r.dropped = end.LogDropped
	if end.Log != nil {
		r.bufLines, r.bufBytes = end.Log.BufferLines, end.Log.BufferBytes
	}
	written1, last1 := countLines(dir, "log line ")
	r.printed, r.written = last1-last0, written1-written0
	if follower != nil {
		r.followed, _ = countFile(follower.LogPath, "log line ")
		r.fdropped = followDropped(follower.LogPath)
	}
	return r
}

// settle waits until the log files of dir stop growing (300ms without a
// change), at most 10s.
func settle(dir string) {
	size := func() int64 {
		var n int64
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	last, since := size(), time.Now()
	for time.Now().Before(deadline) && time.Since(since) < 300*time.Millisecond {
		time.Sleep(50 * time.Millisecond) // polling file sizes for a measurement
		if n := size(); n != last {
			last, since = n, time.Now()
		}
	}
}

// waitServing waits until the master at sock serves, at most a minute.
func waitServing(ctx context.Context, sock string, master *benchproc.Proc) (control.Status, error) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if err := master.Exited(); err != nil {
			return control.Status{}, fmt.Errorf("master: %w\n%s", err, master.LogTail(10))
		}
		var st control.Status
		if err := control.Call(ctx, sock, control.Request{Cmd: control.CmdStatus}, &st); err == nil && st.State == "serving" && len(st.Workers) == 1 {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return control.Status{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return control.Status{}, errors.New("master not serving within a minute")
}

// countLines counts lines containing s in every log file of dir (rotated
// ones included), but the logs -f client's, and returns the highest line
// number of the worker among them.
func countLines(dir, s string) (n, last int64) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		if filepath.Base(f) != "logs-f.log" {
			k, l := countFile(f, s)
			n, last = n+k, max(last, l)
		}
	}
	return n, last
}

// countFile counts the lines of path that contain s, and returns the
// highest number that follows s.
func countFile(path, s string) (n, last int64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := br.ReadSlice('\n')
		if i := bytes.Index(line, []byte(s)); i >= 0 {
			n++
			rest := line[i+len(s):]
			if j := bytes.IndexByte(rest, ' '); j > 0 {
				if v, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
					last = max(last, v)
				}
			}
		}
		if err == io.EOF {
			return n, last
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return n, last
		}
	}
}

// followDropped adds up what `hotcluster logs -f` said it lost.
func followDropped(path string) int64 {
	b, _ := os.ReadFile(path)
	var n int64
	for _, m := range followDroppedRx.FindAllSubmatch(b, -1) {
		k, _ := strconv.ParseInt(string(m[1]), 10, 64)
		n += k
	}
	return n
}

var followDroppedRx = regexp.MustCompile(`logs: (\d+) lines dropped here`)

// hwm is the peak RSS (VmHWM) of pid in bytes.
func hwm(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}
