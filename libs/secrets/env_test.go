package secrets_test

import (
	"context"
	"testing"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/secrets/vaulttest"
)

func TestFromEnv(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := vaulttest.Start(t)
	tests := []struct {
		name      string
		env       map[string]string
		wantVault bool
		wantErr   bool
	}{
		{"local", map[string]string{}, false, false},
		{"vault token", map[string]string{"VAULT_ADDR": srv.URL, "VAULT_TOKEN": srv.RootToken}, true, false},
		{"vault approle", map[string]string{"VAULT_ADDR": srv.URL, "VAULT_ROLE_ID": srv.RoleID, "VAULT_SECRET_ID": srv.SecretID, "VAULT_MOUNT": "secret", "VAULT_PATH_PREFIX": "svc"}, true, false},
		{"vault no credentials", map[string]string{"VAULT_ADDR": srv.URL}, false, true},
		{"vault half approle", map[string]string{"VAULT_ADDR": srv.URL, "VAULT_ROLE_ID": "r"}, false, true},
		{"bad timeout", map[string]string{"VAULT_ADDR": srv.URL, "VAULT_TOKEN": "t", "VAULT_TIMEOUT": "soon"}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := config.New(func(k string) string { return tc.env[k] })
			s, err := secrets.FromEnv(ctx, env, openSQLite(t), testKEK)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("FromEnv() error = nil; want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("FromEnv() error = %v", err)
			}
			if _, isVault := s.(*secrets.Vault); isVault != tc.wantVault {
				t.Fatalf("FromEnv() = %T; want Vault %v", s, tc.wantVault)
			}
			// Usable end to end (Local got its table).
			if _, err := s.Put(ctx, "env/check", map[string]string{"k": "v"}); err != nil {
				t.Errorf("Put() error = %v", err)
			}
		})
	}
	if _, err := secrets.FromEnv(ctx, config.New(func(string) string { return "" }), nil, testKEK); err == nil {
		t.Errorf("FromEnv(local, nil db) error = nil; want an error")
	}
}
