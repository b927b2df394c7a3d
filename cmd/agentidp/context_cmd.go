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

// runContext prints "X-Agentidp-Context: <value>" for the given identity and
// route, so a benchmark can call a service directly, as the gateway would.
// The context is bound to --method and --path (the service's path, no query
// string), like the gateway's.
func runContext(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("context", flag.ContinueOnError)
	sub := fs.String("sub", "", "subject (agent id)")
	org := fs.String("org", "", "organisation id")
	scopes := fs.String("scopes", "agents:read", "comma-separated scopes")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime the context claims")
	method := fs.String("method", "GET", "HTTP method of the request the context is for")
	path := fs.String("path", "", "path of the request the context is for, without the query string (e.g. /api/v1/agents)")
	fs.SetOutput(stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	env := config.New(getenv)
	key := env.Key("AGENTIDP_INTERNAL_KEY", authn.MinKeyLen, true)
	if *sub == "" || *org == "" {
		env.Fail("--sub and --org are required")
	}
	if !strings.HasPrefix(*path, "/") || strings.Contains(*path, "?") {
		env.Fail("--path is required: the request path, starting with /, without a query string")
	}
	if err := env.Err(); err != nil {
		return err
	}
	codec, err := authn.NewCodec(key)
	if err != nil {
		return err
	}
	v, err := codec.Sign(authn.Identity{Subject: *sub, OrgID: *org, ClientID: *sub, Scopes: strings.Split(*scopes, ","), ExpiresAt: time.Now().Add(*ttl).Unix(),
		Method: strings.ToUpper(*method), Path: *path})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", authn.Header, v)
	return nil
}
