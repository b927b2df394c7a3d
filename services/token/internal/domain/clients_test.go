package domain

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientCacheReloadsWhenTheCachedRecordRefuses: a credential created a
// moment ago through another replica is not in this replica's cached
// record. Authentication reads the record once more before refusing, so
// the new credential works at once; a record that accepts, or one just
// loaded, costs no extra load.
func TestClientCacheReloadsWhenTheCachedRecordRefuses(t *testing.T) {
	t.Parallel()
	var loads atomic.Int64
	var creds atomic.Int64 // how many credentials the store holds
	creds.Store(1)
	c := NewClientCache(func(context.Context, string) (ClientRecord, error) {
		loads.Add(1)
		rec := ClientRecord{AgentID: "a"}
		for i := range creds.Load() {
			rec.Credentials = append(rec.Credentials, ClientCredential{ID: string(rune('1' + i))})
		}
		return rec, nil
	}, time.Minute, 10)
	has := func(id string) func(ClientRecord, bool) bool {
		return func(rec ClientRecord, found bool) bool {
			for _, cr := range rec.Credentials {
				if cr.ID == id {
					return found
				}
			}
			return false
		}
	}
	ctx := context.Background()

	// First sight: loaded, and not reloaded even though it refuses.
	if _, _, err := c.GetOrReload(ctx, "a", has("2")); err != nil || loads.Load() != 1 {
		t.Fatalf("Got(first lookup) = %v, %d loads; want 1 load", err, loads.Load())
	}
	// Cached and accepting: no load.
	if _, _, err := c.GetOrReload(ctx, "a", has("1")); err != nil || loads.Load() != 1 {
		t.Fatalf("Got(cached, accepting) = %v, %d loads; want still 1", err, loads.Load())
	}
	// Another replica adds credential 2: the cached record refuses it, one
	// reload finds it.
	creds.Store(2)
	rec, found, err := c.GetOrReload(ctx, "a", has("2"))
	if err != nil || !found || len(rec.Credentials) != 2 || loads.Load() != 2 {
		t.Fatalf("Got(new credential) = %+v, %v, %v, %d loads; want both credentials after exactly one reload", rec, found, err, loads.Load())
	}
	// And the fresh record is cached again.
	if _, _, _ = c.GetOrReload(ctx, "a", has("2")); loads.Load() != 2 {
		t.Errorf("Got(loads after the reload) = %d; want 2", loads.Load())
	}
}
