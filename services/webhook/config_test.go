package webhook_test

import (
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/services/webhook"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	key := strings.Repeat("ab", 32)
	vars := map[string]string{"WEBHOOK_SECRET_KEY": key, "WEBHOOK_ALLOW_PRIVATE": "127.0.0.0/8, 10.1.2.3",
		"WEBHOOK_RETRY_SCHEDULE": "1s,2s", "WEBHOOK_TIMEOUT": "3s", "WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT": "2",
		"WEBHOOK_LEASE": "5s", "WEBHOOK_ACK_WAIT": "7s"}
	env := config.New(func(k string) string { return vars[k] })
	cfg := webhook.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	if len(cfg.AllowPrivate) != 2 || len(cfg.RetrySchedule) != 2 || cfg.Timeout != 3*time.Second ||
		cfg.MaxConcurrencyPerEndpoint != 2 || cfg.DisableAfter != 72*time.Hour || cfg.RotationOverlap != 24*time.Hour || len(cfg.SecretKey) != 32 ||
		cfg.Lease != 5*time.Second || cfg.AckWait != 7*time.Second {
		t.Errorf("ConfigFromEnv = %+v", cfg)
	}
	def := webhook.ConfigFromEnv(config.New(func(k string) string { return map[string]string{"WEBHOOK_SECRET_KEY": key}[k] }))
	if def.Lease != 0 || def.AckWait != 30*time.Second || def.MaxConcurrencyPerEndpoint != 16 || def.Workers != 64 {
		t.Errorf("Got(ConfigFromEnv defaults) lease %v, ack wait %v, per endpoint %d, workers %d; want 0 (timeout+30s), 30s, 16, 64",
			def.Lease, def.AckWait, def.MaxConcurrencyPerEndpoint, def.Workers)
	}
	bad := map[string]string{"WEBHOOK_ALLOW_PRIVATE": "nope", "WEBHOOK_RETRY_SCHEDULE": "x", "WEBHOOK_WORKERS": "0",
		"WEBHOOK_TIMEOUT": "10s", "WEBHOOK_LEASE": "10s", "WEBHOOK_ACK_WAIT": "-1s"}
	env = config.New(func(k string) string { return bad[k] })
	webhook.ConfigFromEnv(env)
	err := env.Err()
	for _, want := range []string{"WEBHOOK_SECRET_KEY", "WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_RETRY_SCHEDULE", "WEBHOOK_WORKERS",
		"WEBHOOK_LEASE", "WEBHOOK_ACK_WAIT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ConfigFromEnv(bad) error = %v; want it to mention %s", err, want)
		}
	}
}

func TestConfigFromEnvVault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		vars    map[string]string
		vault   bool
		wantErr string
	}{
		{"local needs the key", map[string]string{}, false, "WEBHOOK_SECRET_KEY"},
		{"vault without key", map[string]string{"VAULT_ADDR": "https://vault:8200", "VAULT_TOKEN": "hvs.x"}, true, ""},
		{"vault with approle", map[string]string{"VAULT_ADDR": "https://vault:8200", "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "s"}, true, ""},
		{"vault without credentials", map[string]string{"VAULT_ADDR": "https://vault:8200"}, true, "VAULT_TOKEN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := config.New(func(k string) string { return tc.vars[k] })
			cfg := webhook.ConfigFromEnv(env)
			err := env.Err()
			if (cfg.Vault != nil) != tc.vault {
				t.Errorf("Got(cfg.Vault) = %+v; want set = %v", cfg.Vault, tc.vault)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Got(ConfigFromEnv error) = %v; want %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hvs.x") {
				t.Errorf("error %q leaks the token", err)
			}
		})
	}
}
