// Command benchintercept measures bind interception (hotcluster run
// --intercept-bind, package internal/intercept):
//
//   - reload latency, SIGHUP → first answer of the new generation, for a
//     program that listens 50 ms after it starts: bound by itself under
//     --intercept-bind auto (ready when it listens), against the same
//     program taking fd 3 under --intercept-bind off (ready after
//     --ready-delay, as before), with the time to the program's listen
//     beside it;
//   - the filter's cost: requests/s of a bind-heavy worker (each request
//     binds a UDP socket) and of a syscall-heavy one (each request makes
//     many cheap system calls), with the filter (auto) and without (off),
//     in ABBA rounds;
//   - the filter's cost on one system call: getppid timed in processes
//     that loaded the shim's filter and in processes that did not.
//
// Run it through scripts/bench-intercept, which builds hotcluster and this
// driver. The driver also plays the worker (-worker). It talks to
// 127.0.0.1 only and stops every process it started, by PID.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hotcluster/hotcluster/internal/intercept"
	"github.com/hotcluster/hotcluster/internal/loadgen"
	"github.com/hotcluster/hotcluster/scripts/internal/benchproc"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-worker" {
		os.Exit(worker(os.Args[2:]))
	}
	if len(os.Args) > 2 && os.Args[1] == "-syscall-cost" {
		os.Exit(syscallCost(os.Args[2] == "filter"))
	}
	os.Exit(run())
}

type bench struct {
	hotcluster, self, logDir string
	workers, clients         int
	reloads, rounds          int
	roundDuration            time.Duration
	listenAfter              time.Duration
	binds, syscalls, files   int
	measure                  string
	procs                    []*benchproc.Proc
}

func run() int {
	var b bench
	flag.StringVar(&b.hotcluster, "hotcluster", "", "the hotcluster `binary`")
	flag.StringVar(&b.logDir, "logdir", os.TempDir(), "`directory` for the processes' logs")
	flag.IntVar(&b.workers, "workers", 2, "workers per generation")
	flag.IntVar(&b.clients, "clients", 8, "concurrent clients of the cost rounds (keep-alive)")
	flag.IntVar(&b.reloads, "reloads", 10, "reloads measured per mode")
	flag.IntVar(&b.rounds, "rounds", 15, "ABBA quads of the cost measurement (each runs both modes twice)")
	flag.DurationVar(&b.roundDuration, "round-duration", time.Second, "length of one load run of the cost measurement")
	flag.DurationVar(&b.listenAfter, "listen-after", 50*time.Millisecond, "how long after its start the reload-latency worker listens")
	flag.IntVar(&b.binds, "binds", 1, "UDP sockets bound per request by the bind-heavy worker")
	flag.IntVar(&b.syscalls, "syscalls", 200, "system calls (getppid) per request of the syscall-heavy worker")
	flag.IntVar(&b.files, "files", 4, "64 KiB file reads per request of the file-reading worker")
	flag.StringVar(&b.measure, "measure", "latency,cost,syscall", "what to measure, of latency, cost and syscall (the time of one system call with the filter and without)")
	command := flag.String("command", "", "the command line to print in the report")
	flag.Parse()
	if b.hotcluster == "" {
		fmt.Fprintln(os.Stderr, "benchintercept: -hotcluster is required (run scripts/bench-intercept)")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b.self = self
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = b.report(ctx, *command)
	for _, p := range b.procs {
		if serr := p.Stop(5 * time.Second); serr != nil && err == nil && !p.Stopped {
			err = serr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchintercept:", err)
		return 1
	}
	return 0
}

func (b *bench) report(ctx context.Context, command string) error {
	var uname unix.Utsname
	unix.Uname(&uname)
	fmt.Printf("# Bind interception\n\n- date: %s\n- machine: %d CPUs, Linux %s\n- command: `%s`\n\n",
		time.Now().UTC().Format(time.RFC3339), numCPU(), unix.ByteSliceToString(uname.Release[:]), command)

	if strings.Contains(b.measure, "latency") {
		if err := b.latencyReport(ctx); err != nil {
			return err
		}
	}
	if strings.Contains(b.measure, "cost") {
		if err := b.costReport(ctx); err != nil {
			return err
		}
	}
	if strings.Contains(b.measure, "syscall") {
		return b.syscallReport(ctx)
	}
	return nil
}

// syscallReport times one cheap system call (getppid) in processes with
// the filter and without, in ABBA quads of fresh processes: what the
// filter costs every system call a worker makes, bind and listen aside.
func (b *bench) syscallReport(ctx context.Context) error {
	const quads = 10
	times := map[string][]float64{}
	for r := 0; r < quads; r++ {
		for _, mode := range []string{"none", "filter", "filter", "none"} {
			out, err := exec.CommandContext(ctx, b.self, "-syscall-cost", mode).Output()
			if err != nil {
				return fmt.Errorf("syscall cost, %s: %w", mode, err)
			}
			ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
			if err != nil {
				return fmt.Errorf("syscall cost, %s: %q: %w", mode, out, err)
			}
			times[mode] = append(times[mode], ns)
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	none, filter := med(times["none"]), med(times["filter"])
	fmt.Printf("\n## One system call (getppid, %d calls per process, %d ABBA quads of processes)\n\n", syscallLoops, quads)
	fmt.Println("| without the filter | with it | the filter's cost per system call |")
	fmt.Println("| ---: | ---: | ---: |")
	fmt.Printf("| %.0f ns | %.0f ns | **%.0f ns** |\n", none, filter, filter-none)
	return nil
}

// syscallLoops is how many getppid one -syscall-cost process times.
const syscallLoops = 2_000_000

// syscallCost is a process that loads the shim's filter on its thread (as
// the shim does before execve) if filter, times syscallLoops getppid on
// that thread, and prints the nanoseconds of one.
func syscallCost(filter bool) int {
	runtime.LockOSThread()
	if filter {
		ours, theirs, err := intercept.Pair()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer ours.Close()
		// Install closes the descriptor it is given: a duplicate, so that
		// theirs closes its own.
		fd, err := unix.Dup(int(theirs.Fd()))
		theirs.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := intercept.Install(fd); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		buf, oob := make([]byte, 64), make([]byte, unix.CmsgSpace(4))
		n, _, _, _, err := unix.Recvmsg(int(ours.Fd()), buf, oob, 0)
		if err != nil || string(buf[:n]) != "installed" {
			fmt.Fprintf(os.Stderr, "the filter was not installed: %q %v\n", buf[:n], err)
			return 1
		}
	}
	t0 := time.Now()
	for i := 0; i < syscallLoops; i++ {
		unix.Getppid()
	}
	fmt.Printf("%.1f\n", float64(time.Since(t0).Nanoseconds())/syscallLoops)
	return 0
}

func (b *bench) latencyReport(ctx context.Context) error {
	fmt.Printf("## Reload latency, a program that listens %s after it starts\n\n", b.listenAfter)
	fmt.Println("| mode | reloads | SIGHUP → new gen listening (median / max) | SIGHUP → first answer of the new gen (median / max) | answer − listening (median / max) |")
	fmt.Println("| --- | ---: | --- | --- | --- |")
	for _, m := range []struct{ name, how, intercept string }{
		{"binds its port itself, --intercept-bind auto (ready when it listens)", "bind", "auto"},
		{"takes fd 3, --intercept-bind off (ready after --ready-delay 1s)", "fd3", "off"},
	} {
		lat, err := b.latency(ctx, m.how, m.intercept)
		if err != nil {
			return fmt.Errorf("reload latency, %s: %w", m.name, err)
		}
		fmt.Printf("| %s | %d | %s / %s | %s / %s | %s / %s |\n", m.name, len(lat.answer),
			ms(median(lat.listen)), ms(slices.Max(lat.listen)), ms(median(lat.answer)), ms(slices.Max(lat.answer)),
			ms(median(lat.gap)), ms(slices.Max(lat.gap)))
	}

	return nil
}

func (b *bench) costReport(ctx context.Context) error {
	if err := os.WriteFile(filepath.Join(b.logDir, "64k"), make([]byte, 64<<10), 0o644); err != nil {
		return err
	}
	fmt.Printf("\n## The filter's cost (requests/s, %d clients, keep-alive, %d ABBA quads of %s runs)\n\n", b.clients, b.rounds, b.roundDuration)
	fmt.Println("| worker | without the filter (off) | with it (auto) | ratio of the means | ratio per ABBA quad: median (min – max) |")
	fmt.Println("| --- | ---: | ---: | ---: | --- |")
	for _, w := range []struct{ name, work string }{
		{"plain: answers at once (a few system calls per request: read, write)", "none=0"},
		{fmt.Sprintf("file-reading: reads a 64 KiB file %d times per request (os.ReadFile: openat, fstat, read, close)", b.files), "files=" + strconv.Itoa(b.files)},
		{fmt.Sprintf("syscall-heavy: %d getppid per request, nothing else", b.syscalls), "syscalls=" + strconv.Itoa(b.syscalls)},
		{fmt.Sprintf("bind-heavy: binds %d UDP socket(s) to 127.0.0.1:0 per request", b.binds), "binds=" + strconv.Itoa(b.binds)},
	} {
		off, auto, ratios, err := b.cost(ctx, w.work)
		if err != nil {
			return fmt.Errorf("cost, %s: %w", w.name, err)
		}
		slices.Sort(ratios)
		fmt.Printf("| %s | %.0f | %.0f | **%.3f** | %.3f (%.3f – %.3f) |\n", w.name, off, auto, auto/off,
			ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1])
	}
	return nil
}

// master starts hotcluster run with the worker in mode how.
func (b *bench) master(name string, port int, intercept string, workerArgs ...string) (*benchproc.Proc, error) {
	argv := []string{b.hotcluster, "run", "--name", name, "--control", filepath.Join(b.logDir, name+".sock"),
		"--workers", strconv.Itoa(b.workers), "--listen", "web=127.0.0.1:" + strconv.Itoa(port),
		"--intercept-bind", intercept, "--ready-timeout", "30s", "--", b.self, "-worker", "-port", strconv.Itoa(port)}
	p, err := benchproc.Start(name, b.logDir, "", append(argv, workerArgs...))
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	if err := waitLog(p, "serving (master pid", 30*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

type latencies struct{ listen, answer, gap []time.Duration }

// latency reloads a master b.reloads times and measures each.
func (b *bench) latency(ctx context.Context, how, intercept string) (*latencies, error) {
	port, err := benchproc.FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(b.logDir, "boot-")
	if err != nil {
		return nil, err
	}
	p, err := b.master("latency-"+how, port, intercept, "-listen", how, "-listen-after", b.listenAfter.String(), "-bootdir", dir)
	if err != nil {
		return nil, err
	}
	defer p.Stop(10 * time.Second)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var lat latencies
	for gen := 2; gen <= b.reloads+1; gen++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		want := "gen=" + strconv.Itoa(gen) + "\n"
		t0 := time.Now()
		syscall.Kill(p.PID(), syscall.SIGHUP)
		var answered time.Time
		for deadline := t0.Add(30 * time.Second); ; {
			body, err := get(addr)
			if err == nil && body == want {
				answered = time.Now()
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("gen %d never answered (last: %q, %v)%v", gen, body, err, p.Exited())
			}
		}
		var listened time.Time
		for slot := 0; slot < b.workers; slot++ {
			raw, err := bootTime(filepath.Join(dir, fmt.Sprintf("g%d-w%d", gen, slot)), 5*time.Second)
			if err != nil {
				return nil, fmt.Errorf("gen %d worker %d: %w", gen, slot, err)
			}
			ns, _ := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
			if t := time.Unix(0, ns); t.After(listened) {
				listened = t
			}
		}
		lat.listen = append(lat.listen, listened.Sub(t0))
		lat.answer = append(lat.answer, answered.Sub(t0))
		lat.gap = append(lat.gap, answered.Sub(listened))
		// The old generation drains before the next reload.
		if err := waitLog(p, fmt.Sprintf("gen %d drained", gen-1), 30*time.Second); err != nil {
			return nil, err
		}
	}
	return &lat, nil
}

// cost runs the worker doing work under two masters, --intercept-bind
// off and auto, in b.rounds ABBA quads of b.roundDuration per run, and
// returns the mean requests/s of each and the ratio auto/off of every
// quad: short runs, interleaved, so that what else the machine does falls
// on both modes alike.
func (b *bench) cost(ctx context.Context, work string) (off, auto float64, ratios []float64, err error) {
	ports := map[string]int{}
	for _, mode := range []string{"off", "auto"} {
		port, err := benchproc.FreePort()
		if err != nil {
			return 0, 0, nil, err
		}
		name := "cost-" + strings.Split(work, "=")[0] + "-" + mode
		p, err := b.master(name, port, mode, "-listen", "fd3", "-work", work, "-file", filepath.Join(b.logDir, "64k"))
		if err != nil {
			return 0, 0, nil, err
		}
		defer p.Stop(10 * time.Second)
		ports[mode] = port
	}
	sum := map[string]float64{}
	for r := 0; r < b.rounds; r++ {
		quad := map[string]float64{}
		for _, mode := range []string{"off", "auto", "auto", "off"} {
			res, err := loadgen.Run(ctx, loadgen.Config{Addr: "127.0.0.1:" + strconv.Itoa(ports[mode]), Clients: b.clients, KeepAlive: true, Duration: b.roundDuration})
			if err != nil {
				return 0, 0, nil, err
			}
			if res.Failures > 0 {
				return 0, 0, nil, fmt.Errorf("%s: %d of %d requests failed: %v", mode, res.Failures, res.Requests, res.Errors)
			}
			rate := float64(res.Requests) / b.roundDuration.Seconds()
			sum[mode] += rate
			quad[mode] += rate
		}
		ratios = append(ratios, quad["auto"]/quad["off"])
	}
	n := float64(2 * b.rounds)
	return sum["off"] / n, sum["auto"] / n, ratios, nil
}

// bootTime reads the time a worker wrote once its listen returned. The
// generation may answer before that: every worker has called listen, and
// one has not written yet.
func bootTime(path string, within time.Duration) ([]byte, error) {
	deadline := time.Now().Add(within)
	for {
		raw, err := os.ReadFile(path)
		if err == nil || !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return raw, err
		}
		time.Sleep(time.Millisecond)
	}
}

// get makes one request on a new connection and returns the body.
func get(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	_, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		return "", fmt.Errorf("response %.60q", b)
	}
	return body, nil
}

// waitLog waits for a line containing s in p's log.
func waitLog(p *benchproc.Proc, s string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(p.LogPath)
		if strings.Contains(string(b), s) {
			return nil
		}
		if err := p.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q within %s; log %s:\n%s", p.Name, s, within, p.LogPath, p.LogTail(10))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func numCPU() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return 0
	}
	return set.Count()
}

// worker is the program hotcluster runs: it sleeps -listen-after, then
// listens on -port itself (-listen bind) or takes fd 3 (-listen fd3),
// writes when it did to -bootdir, and answers "gen=N" after the work
// -work names; SIGTERM shuts it down.
func worker(args []string) int {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	port := fs.Int("port", 0, "")
	how := fs.String("listen", "bind", "")
	after := fs.Duration("listen-after", 0, "")
	bootDir := fs.String("bootdir", "", "")
	work := fs.String("work", "", "binds=N, syscalls=N or files=N")
	file := fs.String("file", "", "the file files=N reads")
	fs.Parse(args)
	time.Sleep(*after) // the program's own boot, not synchronisation
	var ln net.Listener
	var err error
	if *how == "bind" {
		ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(*port))
	} else {
		f := os.NewFile(3, "web")
		ln, err = net.FileListener(f)
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	gen, slot := os.Getenv("HOTCLUSTER_GENERATION"), os.Getenv("HOTCLUSTER_WORKER_ID")
	if *bootDir != "" {
		// Renamed into place: the driver never reads half a file.
		name := filepath.Join(*bootDir, "g"+gen+"-w"+slot)
		os.WriteFile(name+".tmp", []byte(strconv.FormatInt(time.Now().UnixNano(), 10)), 0o644)
		os.Rename(name+".tmp", name)
	}
	kind, nstr, _ := strings.Cut(*work, "=")
	n, _ := strconv.Atoi(nstr)
	answer := []byte("gen=" + gen + "\n")
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go serve(ln, answer, kind, n, *file)
	<-term
	ln.Close()
	return 0
}

// serve answers HTTP/1.1 requests, keep-alive, doing the work before each.
func serve(ln net.Listener, answer []byte, kind string, n int, file string) {
	resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			have := 0
			for {
				k, err := c.Read(buf[have:])
				if err != nil {
					return
				}
				have += k
				for {
					i := strings.Index(string(buf[:have]), "\r\n\r\n")
					if i < 0 {
						break
					}
					doWork(kind, n, file)
					if _, err := c.Write(resp); err != nil {
						return
					}
					close := strings.Contains(string(buf[:i]), "Connection: close")
					copy(buf, buf[i+4:have])
					have -= i + 4
					if close {
						return
					}
				}
				if have == len(buf) {
					return
				}
			}
		}()
	}
}

func doWork(kind string, n int, file string) {
	switch kind {
	case "files":
		for i := 0; i < n; i++ {
			os.ReadFile(file)
		}
	case "binds":
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				continue
			}
			unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
			unix.Close(fd)
		}
	case "syscalls":
		for i := 0; i < n; i++ {
			unix.Getppid()
		}
	}
}
