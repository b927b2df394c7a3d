package domain

import (
	"context"
	"errors"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// DefaultClientJWKSRefreshInterval is how often, at most, an agent's
// jwksUri is fetched again because an assertion named a key we do not have
// (TOKEN_JWKS_REFRESH_INTERVAL).
const DefaultClientJWKSRefreshInterval = time.Minute

// maxRefreshEntries bounds the per-agent refresh times kept in memory.
const maxRefreshEntries = 10_000

// mayRefreshClientJWKS reports whether the agent's key set may be fetched
// again now (at most once per interval per agent and replica: an unknown
// kid can be sent by anyone, and must not turn us into a request
// amplifier against the agent's server), and records the attempt.
func (s *Service) mayRefreshClientJWKS(agentID string, now time.Time) bool {
	every := s.cfg.ClientJWKSRefreshInterval
	if every <= 0 {
		every = DefaultClientJWKSRefreshInterval
	}
	r := s.ca.refresh
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.last[agentID]; ok && now.Sub(last) < every {
		return false
	}
	if len(r.last) >= maxRefreshEntries {
		for id, at := range r.last {
			if now.Sub(at) >= every {
				delete(r.last, id)
			}
		}
		if len(r.last) >= maxRefreshEntries {
			return false
		}
	}
	r.last[agentID] = now
	return true
}

// refreshClientJWKS fetches every jwksUri the agent registered keys from
// and brings its keys in line with what the URIs publish now: keys new at
// the URI are registered, keys of that URI no longer published are
// revoked, each with its credential.* event (so the did service follows).
// A failed fetch, or an answer without a usable key, changes nothing: the
// keys registered before stay. It reports whether anything changed.
func (s *Service) refreshClientJWKS(ctx context.Context, rec ClientRecord) bool {
	known, err := s.store.ListClientKeys(ctx, rec.OrgID, rec.AgentID)
	if err != nil {
		s.log.WarnContext(ctx, "refresh agent key set: list keys", "client_id", rec.AgentID, "err", err)
		return false
	}
	seen := make(map[string]bool, len(known)) // every kid ever registered: a kid is never reused
	for _, k := range known {
		seen[k.KeyID] = true
	}
	changed := false
	for _, uri := range rec.JWKSURIs {
		jwks, err := s.fetchClientJWKS(ctx, uri)
		if err != nil || len(jwks) == 0 {
			s.log.WarnContext(ctx, "refresh agent key set: keeping the registered keys", "client_id", rec.AgentID,
				"jwks_uri", uri, "err", errString(err, "no usable key"))
			continue
		}
		published := make(map[string]bool, len(jwks))
		for _, j := range jwks {
			published[j.Kid] = true
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		// Keys gone from the URI first, so that the new ones fit under
		// MaxClientKeys.
		for _, k := range known {
			if k.Status != ClientKeyActive || k.JWKSURI == nil || *k.JWKSURI != uri || published[k.KeyID] {
				continue
			}
			ev, err := clientKeyEvent(events.CredentialRevoked, rec.OrgID, ClientKey{KeyID: k.KeyID, AgentID: rec.AgentID, Status: ClientKeyRevoked}, now)
			if err != nil {
				continue
			}
			revoked, err := s.store.RevokeClientKey(ctx, rec.OrgID, rec.AgentID, k.KeyID, now, []events.Envelope{ev})
			if err != nil {
				s.log.WarnContext(ctx, "refresh agent key set: revoke", "client_id", rec.AgentID, "kid", k.KeyID, "err", err)
				continue
			}
			if revoked {
				changed = true
				s.log.InfoContext(ctx, "agent key no longer published at its jwksUri: revoked", "client_id", rec.AgentID, "kid", k.KeyID)
			}
		}
		var add []ClientKey
		var evs []events.Envelope
		for _, j := range jwks {
			if seen[j.Kid] {
				continue
			}
			u := uri
			k := ClientKey{KeyID: j.Kid, AgentID: rec.AgentID, Alg: j.Alg, JWK: j, JWKSURI: &u, Status: ClientKeyActive, CreatedAt: now}
			ev, err := clientKeyEvent(events.CredentialGenerated, rec.OrgID, k, now)
			if err != nil {
				continue
			}
			add, evs = append(add, k), append(evs, ev)
		}
		if len(add) == 0 {
			continue
		}
		if err := s.store.CreateClientKeys(ctx, rec.OrgID, rec.AgentID, add, evs); err != nil {
			// ErrConflict: another replica registered them first.
			if !errors.Is(err, ErrConflict) {
				s.log.WarnContext(ctx, "refresh agent key set: register", "client_id", rec.AgentID, "jwks_uri", uri, "err", err)
			}
			continue
		}
		changed = true
		for _, k := range add {
			seen[k.KeyID] = true
			s.log.InfoContext(ctx, "agent key published at its jwksUri: registered", "client_id", rec.AgentID, "kid", k.KeyID)
		}
	}
	if changed {
		s.notify()
		s.clients.Invalidate(rec.AgentID)
	}
	return changed
}

func errString(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}
