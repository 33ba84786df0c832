package cli

import (
	"testing"

	"github.com/hotcluster/hotcluster/workers"
)

func TestInterceptBindFlag(t *testing.T) {
	t.Parallel()
	exe := selfExe(t)
	for _, tc := range []struct {
		args []string
		want workers.InterceptMode
	}{
		{nil, workers.InterceptAuto},
		{[]string{"--intercept-bind", "auto"}, workers.InterceptAuto},
		{[]string{"--intercept-bind", "off"}, workers.InterceptOff},
	} {
		args := append(append([]string{"hotcluster", "run", "--config", ""}, tc.args...), "--", exe)
		rc, err := reparseRun(args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if rc.Pool.Intercept != tc.want {
			t.Errorf("%v: intercept %v, want %v", tc.args, rc.Pool.Intercept, tc.want)
		}
	}
	file := writeConfig(t, "intercept-bind = \"off\"\n")
	rc, err := reparseRun([]string{"hotcluster", "run", "--config", file, "--", exe})
	if err != nil || rc.Pool.Intercept != workers.InterceptOff {
		t.Errorf("from a config file: %v, %v; want off", rc, err)
	}
	_, err = reparseRun([]string{"hotcluster", "run", "--config", "", "--intercept-bind", "on", "--", exe})
	wantUsageError(t, err, `--intercept-bind "on": want auto or off`)
}
