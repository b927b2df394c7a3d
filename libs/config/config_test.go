package config

import (
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestEnvCollectsEveryProblem(t *testing.T) {
	t.Parallel()
	e := New(envOf(map[string]string{
		"PORT":    "eighty",
		"TIMEOUT": "-1s",
		"MODE":    "fast",
		"KEY":     "deadbeef",
		"SECRET":  "s3cr3t-value-that-must-not-leak",
	}))
	e.Int("PORT", 80)
	e.Duration("TIMEOUT", time.Second)
	e.OneOf("MODE", "safe", "safe", "strict")
	e.Key("KEY", 32, true)
	e.Key("SECRET", 32, true)
	e.Required("MISSING")
	err := e.Err()
	if err == nil {
		t.Fatal("Err() = nil; want every problem")
	}
	for _, want := range []string{"PORT", "TIMEOUT", "MODE", "KEY", "SECRET", "MISSING is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %q; want it to mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("Err() = %q; leaks the secret value", err)
	}
}

func TestEnvValues(t *testing.T) {
	t.Parallel()
	e := New(envOf(map[string]string{"N": "7", "D": "90s", "B": "true", "L": " a, ,b ", "K": strings.Repeat("ab", 32)}))
	if got := e.Int("N", 1); got != 7 {
		t.Errorf("Int(N) = %d; want 7", got)
	}
	if got := e.Int("UNSET", 3); got != 3 {
		t.Errorf("Int(UNSET) = %d; want 3", got)
	}
	if got := e.Duration("D", 0); got != 90*time.Second {
		t.Errorf("Duration(D) = %v; want 90s", got)
	}
	if got := e.Bool("B", false); !got {
		t.Errorf("Bool(B) = false; want true")
	}
	if got := e.List("L", nil); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("List(L) = %q; want [a b]", got)
	}
	if got := e.Key("K", 32, true); len(got) != 32 {
		t.Errorf("Key(K) has %d bytes; want 32", len(got))
	}
	if err := e.Err(); err != nil {
		t.Errorf("Err() = %v; want nil", err)
	}
}
