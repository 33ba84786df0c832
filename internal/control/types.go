package control

import (
	"encoding/json"
	"time"
)

// Status answers CmdStatus.
type Status struct {
	// State is starting, serving, degraded (some slots given up after too
	// many restarts), errored (every slot given up: nothing serves) or
	// stopping.
	State     string     `json:"state"`
	Name      string     `json:"name"`
	PID       int        `json:"pid"`
	Version   string     `json:"version"`
	Started   time.Time  `json:"started"`
	Uptime    Duration   `json:"uptime_seconds"`
	Listeners []Listener `json:"listeners"`
	// Generation is the serving generation, Pending the one starting.
	Generation uint64 `json:"generation"`
	Pending    uint64 `json:"pending,omitempty"`
	Size       int    `json:"size"`
	Stopping   bool   `json:"stopping,omitempty"`
	// Command is what the serving generation runs; NextCommand, when it
	// differs, what the next generation runs (the starting one's, or the
	// command of a reload that failed).
	Command     []string `json:"command"`
	NextCommand []string `json:"next_command,omitempty"`
	LastReload  *Reload  `json:"last_reload,omitempty"`
	// Rollout is the rolling reload in progress (--rollout), if any.
	Rollout *Rollout `json:"rollout,omitempty"`
	// Workers are the live worker processes.
	Workers []Worker `json:"workers"`
	// Restarting lists the slots whose worker died and waits for its
	// respawn; Errored the slots given up after too many restarts.
	Restarting []RestartingSlot `json:"restarting,omitempty"`
	Errored    []ErroredSlot    `json:"errored,omitempty"`
	// LogDropped counts the log lines the master dropped because its
	// output was not read fast enough, or had gone.
	LogDropped uint64 `json:"log_dropped,omitempty"`
	// Log says where the log goes, what each output dropped, and what the
	// buffer of `hotcluster logs` holds.
	Log *LogStatus `json:"log,omitempty"`
	// ForeignSockets are sockets not made by hotcluster found listening on
	// (UDP: bound to) a steered listener's address.
	ForeignSockets []ForeignSocket `json:"foreign_sockets"`
	// Rescue is what the master relays to the serving generation; nil
	// without a steered TCP listener.
	Rescue *Rescue `json:"rescue,omitempty"`
}

// Rollout is a rolling reload in progress: generation Generation replaces
// From, Batch slots at a time; Replaced of Size slots are on Generation
// (Slots), Moving the batch in flight. Back: a batch failed (Error) and
// the replaced slots go back to From. Progress is "rollout 3/8" or
// "rolling back 2/8".
type Rollout struct {
	Progress   string `json:"progress"`
	Generation uint64 `json:"generation"`
	From       uint64 `json:"from"`
	Batch      int    `json:"batch"`
	Replaced   int    `json:"replaced"`
	Size       int    `json:"size"`
	Back       bool   `json:"back,omitempty"`
	Error      string `json:"error,omitempty"`
	Slots      []int  `json:"slots"`
	Moving     []int  `json:"moving,omitempty"`
}

// Rescue is what the master's rescuer holds and has done.
type Rescue struct {
	// Relays are the connections the master relays now.
	Relays int `json:"relays"`
	// Queued counts, since the master started, the connections taken from
	// the accept queue of a socket that no generation serves any more and
	// relayed; Reset those reset instead.
	Queued uint64 `json:"queued"`
	Reset  uint64 `json:"reset"`
	// Held are the old workers' keep-alive connections the master holds
	// now (--rescue http). Counts since the master started: KeepAlive
	// those relayed once their worker let go with the client's next
	// request unread; Redialed relays whose upstream worker was replaced
	// and that went on to a new one; Closed those closed because the
	// client had sent nothing since its last answer; Adopted relays taken
	// over from the previous master at an upgrade.
	Held      int    `json:"held"`
	KeepAlive uint64 `json:"keepalive"`
	Redialed  uint64 `json:"redialed"`
	Closed    uint64 `json:"closed"`
	Adopted   uint64 `json:"adopted"`
	// Disabled says why keep-alive connections are not held, when
	// --rescue http could not take them (ptrace rights, an old kernel).
	Disabled string `json:"disabled,omitempty"`
}

// Listener is one of the master's sockets.
type Listener struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// Mode is "steered" or "shared".
	Mode string `json:"mode"`
	// Selector is, for a steered listener, "ebpf" or "cbpf".
	Selector string `json:"selector,omitempty"`
	// PerSlot says each worker slot has a socket of its own (eBPF).
	PerSlot bool `json:"per_slot,omitempty"`
	// Sticky says the client's source address picks the slot
	// (--balance sticky).
	Sticky bool `json:"sticky,omitempty"`
}

// ForeignSocket is a socket another program made on a listener's address.
type ForeignSocket struct {
	Listener string `json:"listener"`
	Addr     string `json:"addr"`
	// Joined: it sits in the listener's SO_REUSEPORT group and gets no
	// connections. TakesConnections: beside the group, the kernel may
	// prefer it over hotcluster's sockets.
	Joined           bool          `json:"joined"`
	TakesConnections bool          `json:"takes_connections"`
	Owners           []SocketOwner `json:"owners"`
	Since            time.Time     `json:"since"`
}

// SocketOwner is a process that holds a socket.
type SocketOwner struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
}

// Reload is the outcome of a reload.
type Reload struct {
	Generation uint64   `json:"generation"`
	OK         bool     `json:"ok"`
	Error      string   `json:"error,omitempty"`
	Took       Duration `json:"took_seconds"`
}

// ErroredSlot is a worker slot given up after too many restarts: it stays
// empty until the next reload.
type ErroredSlot struct {
	Slot  int       `json:"slot"`
	Why   string    `json:"why"`
	Since time.Time `json:"since"`
	// The worker whose exit gave the slot up: its generation, PID (gone),
	// how it ended, and the respawns of the slot before it.
	Generation uint64 `json:"generation,omitempty"`
	PID        int    `json:"pid,omitempty"`
	Exit       string `json:"exit,omitempty"`
	Restarts   int    `json:"restarts"`
}

// RestartingSlot is a slot whose worker died: it is respawned after a
// back-off. CrashLoop: 5 or more crashes in a row.
type RestartingSlot struct {
	Slot       int       `json:"slot"`
	Generation uint64    `json:"generation"`
	PID        int       `json:"pid"`
	Exit       string    `json:"exit"`
	ExitedAt   time.Time `json:"exited_at"`
	RespawnIn  Duration  `json:"respawn_in_seconds"`
	Restarts   int       `json:"restarts"`
	Crashes    int       `json:"crashes"`
	CrashLoop  bool      `json:"crash_loop,omitempty"`
}

// Worker is one worker process.
type Worker struct {
	Slot       int    `json:"slot"`
	Generation uint64 `json:"generation"`
	PID        int    `json:"pid"`
	// State is starting, ready, draining, hung (missed its watchdog) or
	// stopped (SIGSTOP, a debugger).
	State     string   `json:"state"`
	Replacing bool     `json:"replacing,omitempty"`
	Uptime    Duration `json:"uptime_seconds"`
	// Restarts counts the respawns of the slot in this worker's generation
	// before it (a reload starts at 0); PreviousExit says how the worker it
	// replaced ended, and when.
	Restarts       int        `json:"restarts"`
	PreviousExit   string     `json:"previous_exit,omitempty"`
	PreviousExitAt *time.Time `json:"previous_exit_at,omitempty"`
	RSS            uint64     `json:"rss_bytes"`
	CPUPercent     float64    `json:"cpu_percent"`
}

// Event is one line of the event stream. Its names follow Node's cluster
// events where they match (fork, disconnect, exit).
type Event struct {
	Time       time.Time       `json:"time"`
	Event      string          `json:"event"`
	Generation uint64          `json:"generation,omitempty"`
	Slot       *int            `json:"slot,omitempty"`
	PID        int             `json:"pid,omitempty"`
	Workers    int             `json:"workers,omitempty"`
	Took       Duration        `json:"took_seconds,omitempty"`
	Status     string          `json:"status,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Error      string          `json:"error,omitempty"`
	Message    json.RawMessage `json:"message,omitempty"`
	// Listener names the listener of a "listening" event, e.g.
	// web=127.0.0.1:8080.
	Listener string `json:"listener,omitempty"`
	// Replaced counts the slots a rolling reload has on Generation
	// ("rollout", "rollout-back"; Workers is the size).
	Replaced *int `json:"replaced,omitempty"`
}

// LogStatus is the state of the master's log.
type LogStatus struct {
	Outputs []LogOutput `json:"outputs"`
	// BufferLines and BufferBytes are what the buffer holds, within
	// BufferMaxLines and BufferMaxBytes (0: no buffer).
	BufferLines    int   `json:"buffer_lines"`
	BufferBytes    int64 `json:"buffer_bytes"`
	BufferMaxLines int   `json:"buffer_max_lines"`
	BufferMaxBytes int64 `json:"buffer_max_bytes"`
}

// LogOutput is one place the log goes: stderr, stdout, journal or a file.
type LogOutput struct {
	Name    string `json:"name"`
	Dropped uint64 `json:"dropped"`
	// Error is the first error a write returned; the output may have
	// recovered since.
	Error string `json:"error,omitempty"`
}

// LogsStarted answers CmdLogs; the lines follow, one JSON object each, as
// --log-format json writes them, with the master's sequence number.
type LogsStarted struct {
	// PID is the master's, which numbers its lines.
	PID int `json:"pid"`
}

// LogLine is a line of the logs stream: a log line, or a notice that the
// client fell behind and lost Dropped lines.
type LogLine struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	// JSON is a worker's line that is a JSON object, instead of Msg.
	JSON   json.RawMessage `json:"json,omitempty"`
	Gen    uint64          `json:"gen,omitempty"`
	Slot   *int            `json:"slot,omitempty"`
	PID    int             `json:"pid,omitempty"`
	Stream string          `json:"stream,omitempty"`
	Cut    bool            `json:"cut,omitempty"`
	// Seq numbers the lines of one master.
	Seq     uint64 `json:"seq,omitempty"`
	Dropped uint64 `json:"dropped,omitempty"`
}

// Sent answers CmdSend.
type Sent struct {
	Delivered int `json:"delivered"`
}

// Scaled answers CmdScale.
type Scaled struct {
	Size int `json:"size"`
}

// Upgraded answers CmdUpgrade.
type Upgraded struct {
	PID int `json:"pid"`
}

// Duration is a time.Duration that is a number of seconds in JSON.
type Duration time.Duration

// MarshalJSON writes seconds, to the millisecond.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(float64(time.Duration(d).Milliseconds()) / 1000)
}

// UnmarshalJSON reads seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s float64
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = Duration(s * float64(time.Second))
	return nil
}

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
