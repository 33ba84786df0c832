//go:build chaos && race

package chaos

// raceEnabled says whether the tests (and so the workers, which are the test
// binary) run with the race detector.
const raceEnabled = true
