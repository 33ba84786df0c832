//go:build !linux

package cgroup

import (
	"errors"
	"os"
	"time"
)

// ErrUnavailable: cgroups are Linux's.
var ErrUnavailable = errors.New("cgroup: unavailable: only Linux has cgroups")

// Tree is a cgroup of this process's own (Linux only).
type Tree struct{}

// Leaf is the cgroup of one worker (Linux only).
type Leaf struct{}

func Open(string) (*Tree, error)                      { return nil, ErrUnavailable }
func (t *Tree) Path() string                          { return "" }
func (t *Tree) Leaf(string) (*Leaf, error)            { return nil, ErrUnavailable }
func (t *Tree) Close(time.Duration) ([]int, error)    { return nil, nil }
func (l *Leaf) Path() string                          { return "" }
func (l *Leaf) Open() (*os.File, error)               { return nil, ErrUnavailable }
func (l *Leaf) Procs() []int                          { return nil }
func (l *Leaf) Kill() error                           { return ErrUnavailable }
func (l *Leaf) Remove(time.Duration) error            { return nil }
func RemoveTree(string, time.Duration) ([]int, error) { return nil, ErrUnavailable }
