package analytics_test

import (
	"strings"
	"testing"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/services/analytics"
)

// TestPreviousAuditKeys: ANALYTICS_CHECKPOINT_PREVIOUS_KEYS is read as a
// list of keys; a short or undecodable item is reported by position,
// never by value.
func TestPreviousAuditKeys(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		value   string
		keys    int
		wantErr bool
	}{
		{"unset", "", 0, false},
		{"two", good + ", " + strings.Repeat("cd", 32), 2, false},
		{"short", good + ",abcd", 1, true},
		{"not a key", "not-a-key!!", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := config.New(func(k string) string {
				switch k {
				case "ANALYTICS_CHECKPOINT_PREVIOUS_KEYS":
					return tc.value
				case "ANALYTICS_CHECKPOINT_KEY":
					return good
				}
				return ""
			})
			cfg := analytics.ConfigFromEnv(env)
			err := env.Err()
			if len(cfg.PreviousCheckpointKeys) != tc.keys || (err != nil) != tc.wantErr {
				t.Fatalf("ConfigFromEnv = %d previous keys, %v; want %d, error %v", len(cfg.PreviousCheckpointKeys), err, tc.keys, tc.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "abcd") || strings.Contains(err.Error(), "not-a-key")) {
				t.Errorf("Got(error) = %v; want no key material in it", err)
			}
		})
	}
}
