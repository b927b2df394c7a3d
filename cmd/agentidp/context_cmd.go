package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/config"
)

// runContext prints "X-Agentidp-Context: <value>" for the given identity, so
// a benchmark can call a service directly, as the gateway would.
func runContext(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("context", flag.ContinueOnError)
	sub := fs.String("sub", "", "subject (agent id)")
	org := fs.String("org", "", "organisation id")
	scopes := fs.String("scopes", "agents:read", "comma-separated scopes")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime the context claims")
	fs.SetOutput(stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	env := config.New(getenv)
	key := env.Key("AGENTIDP_INTERNAL_KEY", authn.MinKeyLen, true)
	if *sub == "" || *org == "" {
		env.Fail("--sub and --org are required")
	}
	if err := env.Err(); err != nil {
		return err
	}
	codec, err := authn.NewCodec(key)
	if err != nil {
		return err
	}
	v, err := codec.Sign(authn.Identity{Subject: *sub, OrgID: *org, ClientID: *sub, Scopes: strings.Split(*scopes, ","), ExpiresAt: time.Now().Add(*ttl).Unix()})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", authn.Header, v)
	return nil
}
