package child

import (
	"reflect"
	"testing"
	"time"
)

func TestParseEnv(t *testing.T) {
	t.Parallel()
	const pid = 4242
	type sock struct {
		Fd   int
		Name string
	}
	tests := []struct {
		name    string
		env     map[string]string
		sockets []sock
		err     bool
		gen     int
		id      int
		workers int
		notify  string
		dog     time.Duration
	}{
		{
			name: "by hand",
			id:   -1,
		},
		{
			name:    "named",
			env:     map[string]string{"LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:metrics", "LISTEN_PID": "4242"},
			sockets: []sock{{3, "web"}, {4, "metrics"}},
			id:      -1,
		},
		{
			name:    "names missing",
			env:     map[string]string{"LISTEN_FDS": "3", "LISTEN_FDNAMES": "web::", "LISTEN_PID": "4242"},
			sockets: []sock{{3, "web"}, {4, "unknown"}, {5, "unknown"}},
			id:      -1,
		},
		{
			name: "other pid",
			env:  map[string]string{"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web", "LISTEN_PID": "4243"},
			id:   -1,
		},
		{
			name: "no pid",
			env:  map[string]string{"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"},
			id:   -1,
		},
		{
			name: "bad count",
			env:  map[string]string{"LISTEN_FDS": "x", "LISTEN_PID": "4242"},
			err:  true,
			id:   -1,
		},
		{
			name: "negative count",
			env:  map[string]string{"LISTEN_FDS": "-1", "LISTEN_PID": "4242"},
			err:  true,
			id:   -1,
		},
		{
			name: "bad count for another pid",
			env:  map[string]string{"LISTEN_FDS": "x", "LISTEN_PID": "1"},
			id:   -1,
		},
		{
			name: "worker",
			env: map[string]string{
				"NOTIFY_SOCKET": "@notify", "HOTCLUSTER_GENERATION": "3",
				"HOTCLUSTER_WORKER_ID": "0", "HOTCLUSTER_WORKERS": "4",
			},
			notify: "@notify", gen: 3, id: 0, workers: 4,
		},
		{
			name: "watchdog",
			env:  map[string]string{"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": "4242"},
			id:   -1, dog: 1500 * time.Millisecond,
		},
		{
			name: "watchdog without pid",
			env:  map[string]string{"WATCHDOG_USEC": "250000"},
			id:   -1, dog: 250 * time.Millisecond,
		},
		{
			name: "watchdog for another pid",
			env:  map[string]string{"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": "1"},
			id:   -1,
		},
		{
			name: "garbage watchdog",
			env:  map[string]string{"WATCHDOG_USEC": "soon"},
			id:   -1,
		},
		{
			name: "garbage ids",
			env:  map[string]string{"HOTCLUSTER_GENERATION": "x", "HOTCLUSTER_WORKER_ID": "", "HOTCLUSTER_WORKERS": "1.5"},
			id:   -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := parseEnv(func(k string) string { return tt.env[k] }, pid)
			var got []sock
			for _, s := range e.sockets {
				got = append(got, sock{s.fd, s.name})
			}
			if !reflect.DeepEqual(got, tt.sockets) {
				t.Errorf("sockets = %v, want %v", got, tt.sockets)
			}
			if (e.err != nil) != tt.err {
				t.Errorf("err = %v, want error: %v", e.err, tt.err)
			}
			if e.generation != tt.gen || e.workerID != tt.id || e.workers != tt.workers || e.notify != tt.notify {
				t.Errorf("generation, worker, workers, notify = %d, %d, %d, %q; want %d, %d, %d, %q",
					e.generation, e.workerID, e.workers, e.notify, tt.gen, tt.id, tt.workers, tt.notify)
			}
			if e.watchdog != tt.dog {
				t.Errorf("watchdog = %v, want %v", e.watchdog, tt.dog)
			}
		})
	}
}

func TestFindMissingNameListsNames(t *testing.T) {
	t.Parallel()
	e := &environ{sockets: []*socket{{fd: 3, name: "web"}, {fd: 4, name: "metrics", taken: true}}}
	_, err := e.find("api", kindListener)
	want := `child: no inherited socket named "api"; inherited: "web" (fd 3), "metrics" (fd 4)`
	if err == nil || err.Error() != want {
		t.Errorf("find(api) error = %v, want %s", err, want)
	}
	_, err = e.find("metrics", kindListener)
	if want := `child: inherited socket "metrics" already taken`; err == nil || err.Error() != want {
		t.Errorf("find(metrics) error = %v, want %s", err, want)
	}
}
