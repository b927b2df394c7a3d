// Command token runs the AgentIdP token service.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/token"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := svcrun.Main(ctx, os.Args, os.Getenv, os.Stdout, token.Spec()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(1)
	}
}
