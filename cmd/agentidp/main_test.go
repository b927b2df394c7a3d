package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpExitsZero: `agentidp dev --help` used to exit 1 with "flag: help
// requested". Every command's -h/--help prints its usage on stdout and
// succeeds (main exits 0 when run returns nil); unknown flags still fail.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"-h"},
		{"dev", "--help"}, {"dev", "-h"},
		{"bootstrap", "--help"},
		{"context", "--help"},
		{"admin", "--help"}, {"admin", "reset-credentials", "--help"},
		{"events", "--help"}, {"events", "replay", "--help"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"agentidp"}, args...), noEnv, &out, &errOut)
		if err != nil {
			t.Errorf("agentidp %s: %v, want success", strings.Join(args, " "), err)
		}
		if !strings.Contains(out.String(), "Usage") && !strings.Contains(out.String(), "-data") && !strings.Contains(out.String(), "-sub") {
			t.Errorf("agentidp %s printed no usage on stdout:\n%s", strings.Join(args, " "), &out)
		}
	}
	for _, args := range [][]string{{"dev", "--no-such-flag"}, {"admin", "reset-credentials", "--no-such-flag"}, {"events", "replay", "--no-such-flag"}, {"no-such-command"}, {}} {
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"agentidp"}, args...), noEnv, &out, &out); err == nil {
			t.Errorf("agentidp %s succeeded, want an error", strings.Join(args, " "))
		}
	}
}
