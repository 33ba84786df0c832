// Command benchbalance measures how evenly a hotcluster instance's workers
// share connections: it starts `hotcluster run --workers N` over
// examples/hello on a fresh loopback port, opens a new connection per
// request from C clients for a while, and counts the answers per worker
// (hello answers "worker=N"). It prints one Markdown table row per run:
// the requests each worker served, busiest/idlest, failures. It talks only
// to 127.0.0.1 and stops the master it started (by PID, SIGTERM, then
// waits). Run it through scripts/bench-balance.
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
	flag.Parse()
	if err := run(*hc, *hello, *workers, *clients, *dur, *label, strings.Fields(*flags)); err != nil {
		fmt.Fprintln(os.Stderr, "benchbalance:", err)
		os.Exit(1)
	}
}

var workerRE = regexp.MustCompile(`worker=(\d+)`)

func run(hc, hello string, workers, clients int, dur time.Duration, label string, extra []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"run", "--listen", "web=" + addr, "--workers", strconv.Itoa(workers)}, extra...)
	args = append(args, "--", hello)
	cmd := exec.Command(hc, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start hotcluster: %w", err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
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
		return errors.New("hotcluster did not say it was serving within 30s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var mu sync.Mutex
	counts := make([]int, workers)
	failed := 0
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DisableKeepAlives: true}
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
