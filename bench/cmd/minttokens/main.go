// Command minttokens obtains N distinct access tokens from an OAuth2 token
// endpoint (client-credentials grant) and writes them to a file, one per
// line, for "loadgen -bearer-file". Run "minttokens -h" for flags; see
// bench/README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentidp/agentidp/bench/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := loadgen.MintMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
