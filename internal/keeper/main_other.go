//go:build !linux

package keeper

import "log/slog"

// Main is the keeper process (Linux only): elsewhere it has nothing to do.
func Main(master, pgrp int, log *slog.Logger) int { return 0 }
