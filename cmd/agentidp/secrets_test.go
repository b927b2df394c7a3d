package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretsFileIsNeverSilentlyRegenerated: an emptied or corrupted
// secrets.json used to be replaced by new keys, after which every existing
// secret and token stopped working. Beside existing data, a missing or
// unreadable file is now a start-up error naming it; only a fresh directory
// gets new keys.
func TestSecretsFileIsNeverSilentlyRegenerated(t *testing.T) {
	// A real data directory: start once, stop.
	dir := t.TempDir()
	d := startDev(t, loopbackArgs(dir)...)
	d.waitRunning(t)
	id, secret := adminCredentials(t, d.out.String())
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "secrets.json")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]string
	if err := json.Unmarshal(good, &keys); err != nil {
		t.Fatal(err)
	}
	withoutPepper, _ := json.Marshal(map[string]string{"internalKey": keys["internalKey"], "keyEncryptionKey": keys["keyEncryptionKey"]})
	withoutDIDKey, _ := json.Marshal(map[string]string{"internalKey": keys["internalKey"], "secretPepper": keys["secretPepper"],
		"keyEncryptionKey": keys["keyEncryptionKey"], "webhookKey": keys["webhookKey"]})

	for _, tc := range []struct {
		name    string
		content []byte // nil: the file is removed
		want    string
	}{
		{"emptied", []byte{}, "is unreadable"},
		{"emptied to {}", []byte("{}"), "internalKey is missing"},
		{"corrupted", []byte(`{"internalKey": "zz`), "is unreadable"},
		{"a key missing", withoutPepper, "secretPepper is missing"},
		{"a key not hex", []byte(strings.Replace(string(good), keys["keyEncryptionKey"], "not-hex", 1)), "keyEncryptionKey is missing or not 32 hex-encoded bytes"},
		{"the DID key missing beside did.db", withoutDIDKey, "didKey is missing but did.db holds data"},
		{"missing with existing data", nil, "is missing but"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.content == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			d := startDev(t, loopbackArgs(dir)...)
			err := d.wait(t)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start with a %s secrets file: %v; want an error naming %s and saying %q", tc.name, err, path, tc.want)
			}
			after, _ := os.ReadFile(path)
			if tc.content == nil && after != nil || tc.content != nil && string(after) != string(tc.content) {
				t.Fatalf("the failed start rewrote %s: %q", path, after)
			}
		})
	}

	// Restored from the backup: the old admin secret works again.
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	d2 := startDev(t, loopbackArgs(dir)...)
	d2.waitRunning(t)
	if code, _ := tokenFor(t, d2.gatewayURL(t), id, secret, ""); code != 200 {
		t.Fatalf("token with the admin secret after restoring secrets.json: %d", code)
	}
}

// TestSecretsFileFreshDirectory: a fresh directory gets every key, mode
// 0600; a directory made by an older version without the DID key (and no
// did.db yet) gets it added while the other keys stay.
func TestSecretsFileFreshDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := loadOrCreateSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]string{"internalKey": s.InternalKey, "secretPepper": s.SecretPepper, "keyEncryptionKey": s.KeyEncryptionKey, "webhookKey": s.WebhookKey, "didKey": s.DIDKey} {
		if len(k) != 64 {
			t.Errorf("%s = %q, want 32 hex-encoded bytes", name, k)
		}
	}
	path := filepath.Join(dir, "secrets.json")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.json: %v, %v; want mode 0600", fi, err)
	}
	again, err := loadOrCreateSecrets(dir)
	if err != nil || again != s {
		t.Fatalf("second load = %+v, %v; want the same keys", again, err)
	}

	// An older version's file: no DID key, token.db but no did.db.
	old := s
	old.DIDKey = ""
	b, _ := json.Marshal(old)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := loadOrCreateSecrets(dir)
	if err != nil || len(got.DIDKey) != 64 || got.InternalKey != s.InternalKey || got.SecretPepper != s.SecretPepper || got.WebhookKey != s.WebhookKey {
		t.Fatalf("older file = %+v, %v; want the DID key added and the others kept", got, err)
	}
}
