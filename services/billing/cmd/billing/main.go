// Command billing runs the billing service (Stripe checkout, webhooks,
// subscriptions and usage).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/billing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := svcrun.Main(ctx, os.Args, os.Getenv, os.Stdout, billing.Spec()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(1)
	}
}
