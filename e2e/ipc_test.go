package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/internal/loadgen"
)

// nodeWorker is a plain Node.js worker that says it is ready with PM2's
// process.send('ready'), late on purpose, and reports whether its own
// child processes see the channel.
const nodeWorker = `
const http = require('http');
const { execFileSync } = require('child_process');
const fd = process.env.HOTCLUSTER_IPC_FD;
const child = execFileSync('/bin/sh', ['-c', 'if [ -n "$NODE_CHANNEL_FD" ] || [ -e /proc/self/fd/' + fd + ' ]; then echo true; else echo false; fi']).toString().trim();
console.log('CHILD_HAS_CHANNEL=' + child +
  ' CONNECTED=' + process.connected + ' gen=' + process.env.HOTCLUSTER_GENERATION);
const server = http.createServer((req, res) => {
  res.end('hello gen=' + process.env.HOTCLUSTER_GENERATION + '\n');
});
server.listen({ fd: 3 }, () => {
  setTimeout(() => {
    process.send({ cmd: 'NODE_SOMETHING_INTERNAL' });
    process.send({ some: 'message' });
    process.send('ready');
    console.log('SENT READY');
  }, 400);
});
process.on('SIGTERM', () => { server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); });
`

func TestNodeWorkerReadyOverIPC(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf("node is not installed here: %v", err)
	}
	script := filepath.Join(t.TempDir(), "worker.js")
	if err := os.WriteFile(script, []byte(nodeWorker), 0o644); err != nil {
		t.Fatal(err)
	}
	// --ready notify: the new generation takes over only once it said
	// "ready", 400 ms after it listens.
	m := startCommand(t, []string{"--workers", "2", "--listen", "web=127.0.0.1:0", "--ready", "notify"}, node, script)
	addr := m.listenAddr("web")
	m.waitReady(1)
	if n := m.count(`CHILD_HAS_CHANNEL=false CONNECTED=true gen=1`); n != 2 {
		t.Fatalf("%d of 2 workers connected with a channel their children do not see", n)
	}
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	start := time.Now()
	m.signal(syscall.SIGHUP)
	sm, _ := m.waitLine(0, `gen 2 ready in (\S+)`)
	if d, err := time.ParseDuration(sm[1]); err != nil || d < 400*time.Millisecond {
		t.Errorf("gen 2 ready in %s, before it sent 'ready'", sm[1])
	}
	if m.count(`\[g2 w\d\] SENT READY`) != 2 {
		t.Errorf("gen 2 ready before both workers sent 'ready' (%s after SIGHUP)", time.Since(start))
	}
	m.waitLine(0, `gen 1 drained`)
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 2)
	if m.count(`message channel:`) != 0 {
		t.Error("Node's messages were reported as bad input")
	}
}

// A worker that floods its channel with garbage, an oversized line and
// valid messages neither blocks the master nor keeps it from serving.
func TestIPCBadInput(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "ipc-flood", "--workers", "1", "--listen", "web=127.0.0.1:0", "--ipc", "on", "--ready", "notify")
	addr := m.listenAddr("web")
	m.waitReady(1)
	m.waitLine(0, `message channel: workers: malformed message`)
	m.waitLine(0, `message channel: message over 1048576 bytes dropped`)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4, MaxRequests: 200, Duration: testTimeout})
	m.reload(2)
	assertNoFailures(t, stop())
	// The channel is there only when asked for.
	for _, l := range m.output() {
		if strings.Contains(l, "CONTRACT") && !strings.Contains(l, "HOTCLUSTER_IPC_FD=4") {
			t.Errorf("worker without HOTCLUSTER_IPC_FD=4: %s", l)
		}
	}
}

// A Go worker using the library's Send reports readiness over the channel.
func TestGoWorkerReadyOverIPC(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "ipc-ready", "--workers", "2", "--listen", "web=127.0.0.1:0", "--ipc", "on", "--ready", "notify")
	addr := m.listenAddr("web")
	m.waitReady(1)
	stop := load(t, loadgen.Config{Addr: addr, Clients: 4})
	m.reload(2)
	assertNoFailures(t, stop())
	assertServedBy(t, "tcp", addr, 2)
}
