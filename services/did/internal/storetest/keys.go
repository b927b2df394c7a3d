package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/agentidp/agentidp/services/did/internal/domain"
	"github.com/google/uuid"
)

// RunKeys checks the domain.KeyStore contract on the store newKeys returns
// (the secrets-port adapter on every backend): round trip of binary DER,
// idempotent Put, separate refs, missing ref wrapping ErrNotFound.
func RunKeys(t *testing.T, newKeys func(t *testing.T) domain.KeyStore) {
	t.Helper()
	s := newKeys(t)
	ctx := context.Background()
	subject := uuid.NewString()
	der := make([]byte, 138)
	for i := range der {
		der[i] = byte(i * 7) // every kind of byte, NUL included
	}
	ref := domain.KeyRef(subject, "kid-1")
	if _, err := s.Get(ctx, ref); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get(missing) = %v; want ErrNotFound", err)
	}
	if err := s.Put(ctx, ref, der); err != nil {
		t.Fatalf("Put = %v", err)
	}
	if err := s.Put(ctx, ref, der); err != nil {
		t.Errorf("Put(again) = %v; want nil", err)
	}
	other := domain.KeyRef(subject, "kid-2")
	if err := s.Put(ctx, other, []byte("another key")); err != nil {
		t.Fatalf("Put(other) = %v", err)
	}
	if got, err := s.Get(ctx, ref); err != nil || !bytes.Equal(got, der) {
		t.Errorf("Get = %x, %v; want %x", got, err, der)
	}
	if got, err := s.Get(ctx, other); err != nil || string(got) != "another key" {
		t.Errorf("Get(other) = %q, %v; want %q", got, err, "another key")
	}
	if _, err := s.Get(ctx, domain.KeyRef(uuid.NewString(), "kid-1")); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get(other subject) = %v; want ErrNotFound", err)
	}
}
