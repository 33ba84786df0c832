package cli

import (
	"time"

	"github.com/hotcluster/hotcluster/internal/keeper"
	"github.com/hotcluster/hotcluster/internal/logs"
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
			cfg := logs.Config{NoRing: true}
			if c.String("log-format") == "json" {
				cfg.Format = logs.JSON
			}
			l, err := logs.Open(cfg)
			if err != nil {
				return err
			}
			defer l.Close(2 * time.Second)
			keeper.Main(c.Int("master"), c.Int("pgrp"), l.Logger())
			return nil
		},
	}
}
