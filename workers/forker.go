package workers

import (
	"os/exec"
	"runtime"
	"sync"
)

// forker starts every worker process from one OS thread, locked for as long
// as the pool runs. PR_SET_PDEATHSIG fires when the thread that forked a
// process ends, not the process (go.dev/issue/27505): a worker started from
// a goroutine's thread that the runtime later retires would be killed with
// it. One locked thread serves them all, where one per worker would cost a
// thread per worker (Go's limit is 10,000 threads).
type forker struct {
	mu     sync.Mutex // held while a request is handed over, and by stop
	closed bool
	reqs   chan forkRequest
	done   chan struct{}
}

type forkRequest struct {
	fork func() error
	err  chan<- error
}

func startForker() *forker {
	f := &forker{reqs: make(chan forkRequest), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		// Never unlocked: the thread ends with this goroutine, once every
		// worker has been reaped (see Run), and the kernel then signals
		// any process left.
		runtime.LockOSThread()
		for r := range f.reqs {
			r.err <- r.fork()
		}
	}()
	return f
}

// run calls fork, which starts a process, on the forker's thread;
// ErrStopped once the forker has stopped.
func (f *forker) run(fork func() error) error {
	c := make(chan error, 1)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrStopped
	}
	f.reqs <- forkRequest{fork, c}
	f.mu.Unlock()
	return <-c
}

// stop ends the forker's goroutine, and so its thread, and waits for it.
// Safe to call twice.
func (f *forker) stop() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.reqs)
	}
	f.mu.Unlock()
	<-f.done
}

// StartProcess starts cmd from the thread the pool starts its workers from,
// so that a Pdeathsig set on cmd holds until Run returns (the development
// loop's builds), and through Config.Leftovers, which then knows it as a
// process the caller waits for. After Run has returned it returns
// ErrStopped.
func (p *Pool) StartProcess(cmd *exec.Cmd) error {
	l := p.cfg.Leftovers
	if l == nil {
		return p.forker.run(cmd.Start)
	}
	return p.forker.run(func() error {
		_, err := l.Own(func() (int, error) {
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			return cmd.Process.Pid, nil
		})
		return err
	})
}
