// Command benchbalance measures how evenly a hotcluster instance's workers
// share connections: it starts `hotcluster run --workers N` over
// examples/hello on a fresh loopback port, opens a new connection per
// request from C clients for a while, and counts the answers per worker
// (hello answers "worker=N"). It prints one Markdown table row per run:
// the requests each worker served, busiest/idlest, failures. It talks only
// to 127.0.0.1 and stops the master it started (by PID, SIGTERM, then
// waits). Run it through scripts/bench-balance.
//
// -direct runs the same hello workers unsupervised instead: N copies of
// hello -reuseport on the port (the kernel's own SO_REUSEPORT hash), each
// with HOTCLUSTER_WORKER_ID set so that it names its index; the baseline
// that hotcluster's throughput is compared with. -sources N makes client i
// dial from 127.0.0.2 to 127.0.0.(N+1), each in turn, as clients on N hosts would, for
// --balance sticky, which picks the worker by client address.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	hc := flag.String("hotcluster", "", "hotcluster binary")
	hello := flag.String("hello", "", "examples/hello binary")
	workers := flag.Int("workers", 4, "workers")
	clients := flag.Int("clients", 16, "concurrent clients, each a new connection per request")
	dur := flag.Duration("duration", 10*time.Second, "load duration")
	label := flag.String("label", "", "row label")
	flags := flag.String("flags", "", "extra hotcluster run flags, space-separated")
	direct := flag.Bool("direct", false, "run the hello workers unsupervised (hello -reuseport), without hotcluster")
	sources := flag.Int("sources", 0, "client source addresses 127.0.0.2 and up (0: the kernel's choice, 127.0.0.1)")
	flag.Parse()
	if *sources < 0 || *sources > 250 {
		fmt.Fprintln(os.Stderr, "benchbalance: -sources: want 0 to 250")
		os.Exit(2)
	}
	start := startMaster
	if *direct {
		start = startDirect
	}
	if err := run(start, *hc, *hello, *workers, *clients, *sources, *dur, *label, strings.Fields(*flags)); err != nil {
		fmt.Fprintln(os.Stderr, "benchbalance:", err)
		os.Exit(1)
	}
}

var workerRE = regexp.MustCompile(`worker=(\d+)`)

// starter starts the servers on addr, waits until they serve, and returns
// the listener's mode for the row and a function that stops them all and
// waits for them.
type starter func(hc, hello, addr string, workers int, extra []string) (mode string, stop func(), err error)

func run(start starter, hc, hello string, workers, clients, sources int, dur time.Duration, label string, extra []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	mode, stop, err := start(hc, hello, addr, workers, extra)
	if err != nil {
		return err
	}
	defer stop()
	if sources > 0 {
		mode += fmt.Sprintf("; clients from %d addresses", sources)
	}
	return measure(addr, workers, clients, sources, dur, label, mode)
}

// startMaster runs hotcluster over hello.
func startMaster(hc, hello, addr string, workers int, extra []string) (string, func(), error) {
	args := append([]string{"run", "--listen", "web=" + addr, "--workers", strconv.Itoa(workers)}, extra...)
	args = append(args, "--", hello)
	cmd := exec.Command(hc, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start hotcluster: %w", err)
	}
	stop := func() { stopProc(cmd) }
	serving := make(chan struct{})
	var mode string
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "listening on") && mode == "" {
				if i := strings.Index(line, "("); i >= 0 {
					mode = strings.TrimSuffix(line[i+1:], ")")
				}
			}
			if strings.Contains(line, "serving (master pid") {
				once.Do(func() { close(serving) })
			}
		}
	}()
	select {
	case <-serving:
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, errors.New("hotcluster did not say it was serving within 30s")
	}
	return mode, stop, nil
}

// stopProc sends SIGTERM to cmd and waits for it, with SIGKILL to its
// process group after 30 s.
func stopProc(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// startDirect runs workers copies of hello -reuseport on addr, without
// hotcluster, and waits until all of them listen.
func startDirect(_, hello, addr string, workers int, _ []string) (string, func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			stopProc(c)
		}
	}
	for i := range workers {
		cmd := exec.Command(hello, "-addr", addr, "-reuseport")
		cmd.Env = append(os.Environ(), "HOTCLUSTER_WORKER_ID="+strconv.Itoa(i))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			stop()
			return "", nil, fmt.Errorf("start hello: %w", err)
		}
		cmds = append(cmds, cmd)
	}
	_, port, _ := net.SplitHostPort(addr)
	deadline := time.Now().Add(30 * time.Second)
	for listening(port) < workers {
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("%d hello processes not all listening on %s within 30s", workers, addr)
		}
		time.Sleep(10 * time.Millisecond) // polling /proc: nothing to wait on
	}
	return "unsupervised, hello -reuseport", stop, nil
}

// listening counts the IPv4 TCP sockets listening on port (/proc/net/tcp,
// state 0A).
func listening(port string) int {
	p, _ := strconv.Atoi(port)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0
	}
	suffix := fmt.Sprintf(":%04X", p)
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1], suffix) && f[3] == "0A" {
			n++
		}
	}
	return n
}

// measure runs the load and prints the row.
func measure(addr string, workers, clients, sources int, dur time.Duration, label, mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var mu sync.Mutex
	counts := make([]int, workers)
	failed := 0
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DisableKeepAlives: true}
			if sources > 0 {
				// Connection k of client i comes from address
				// (i + k*clients) % sources: every address in turn,
				// whatever the number of clients.
				k := 0
				tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
					src := (i + k*clients) % sources
					k++
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+src))}}
					return d.DialContext(ctx, network, a)
				}
			}
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for ctx.Err() == nil {
				resp, err := c.Get("http://" + addr + "/")
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						failed++
						mu.Unlock()
					}
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				m := workerRE.FindSubmatch(body)
				mu.Lock()
				if m == nil {
					failed++
				} else if w, _ := strconv.Atoi(string(m[1])); w < workers {
					counts[w]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	hi, lo := slices.Max(counts), slices.Min(counts)
	ratio := "∞"
	if lo > 0 {
		ratio = fmt.Sprintf("%.2f", float64(hi)/float64(lo))
	}
	strs := make([]string, len(counts))
	for i, n := range counts {
		strs[i] = strconv.Itoa(n)
	}
	fmt.Printf("| %s | %s | %s | %d | %s | %d |\n", label, mode, strings.Join(strs, " / "), total, ratio, failed)
	return nil
}
