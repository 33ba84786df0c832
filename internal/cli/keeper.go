package cli

import (
	"log/slog"
	"os"

	"github.com/hotcluster/hotcluster/internal/keeper"
	"github.com/hotcluster/hotcluster/internal/master"
	"github.com/urfave/cli/v2"
)

// keeperCommand runs the keeper that a master starts beside itself (see
// package internal/keeper); it is no command for people, hence hidden.
func keeperCommand() *cli.Command {
	return &cli.Command{
		Name:   keeper.Command,
		Hidden: true,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "master"},
			&cli.IntFlag{Name: "pgrp"},
			&cli.StringFlag{Name: "log-format", Value: "text"},
		},
		Action: func(c *cli.Context) error {
			log := master.NewLogger(os.Stderr, c.String("log-format") == "json", slog.LevelInfo)
			keeper.Main(c.Int("master"), c.Int("pgrp"), log)
			return nil
		},
	}
}
