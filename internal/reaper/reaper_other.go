//go:build !linux

package reaper

import (
	"context"
	"log/slog"
)

// Config configures a Reaper.
type Config struct {
	Log     *slog.Logger
	Track   func(pid int, start uint64)
	Untrack func(pid int)
}

// Reaper keeps the books of children (Linux only reaps orphans).
type Reaper struct{}

// Role is how this process came to reap orphans.
type Role int

// None: orphans are not this process's.
const None Role = 0

func (r Role) String() string { return "none" }

func New(Config) *Reaper                                                            { return &Reaper{} }
func (r *Reaper) Role() Role                                                        { return None }
func (r *Reaper) Fork(fork func() (int, error)) (int, error)                        { return fork() }
func (r *Reaper) ForkWorker(_ uint64, _ int, fork func() (int, error)) (int, error) { return fork() }
func (r *Reaper) WorkerExited(context.Context, int)                                 {}
func (r *Reaper) Run(ctx context.Context)                                           { <-ctx.Done() }
