package gateway

import (
	"slices"

	"github.com/agentidp/agentidp/libs/revocation"
	"strings"
	"sync"
	"time"
)

// verifiedToken is what the gateway keeps of a token that passed
// verification. Its slices are shared by every request presenting the
// token and must not be modified.
type verifiedToken struct {
	subject, clientID, orgID, jti, kid string
	exp                                int64
	scopes                             []string // sorted
	actors                             []string
	// rev is what the revocation check needs; it is checked on every
	// request, cached or not.
	rev revocation.Token
}

func newVerifiedToken(c *accessClaims, kid string) *verifiedToken {
	scopes := strings.Fields(c.Scope)
	slices.Sort(scopes)
	v := &verifiedToken{subject: c.Subject, clientID: c.ClientID, orgID: c.OrganizationID, jti: c.ID,
		kid: kid, exp: c.ExpiresAt, scopes: scopes, actors: c.actors()}
	v.rev = revocation.Token{JTI: c.ID, Subject: c.Subject, CredentialID: c.CredentialID, OrgID: c.OrganizationID,
		Actors: v.actors, IssuedAtMs: revocation.IssuedAtMs(c.IssuedAt, c.IssuedAtMs)}
	if c.Act != nil {
		// A delegated token: its chains and parents are revocation keys too.
		chains := c.ChainIDs
		if c.ChainID != "" && !slices.Contains(chains, c.ChainID) {
			chains = append(slices.Clip(chains), c.ChainID)
		}
		v.rev.Chains = chains
		for i, p := range c.Parents {
			if i >= revocation.MaxParents {
				break
			}
			v.rev.Parents = append(v.rev.Parents, revocation.Token{JTI: p.JTI, Subject: p.Sub, CredentialID: p.CredentialID,
				OrgID: c.OrganizationID, IssuedAtMs: p.IssuedAtMs})
		}
	}
	return v
}

// tokenCache remembers verified tokens until they expire: an agent uses
// one access token for many calls, and signature verification is by far
// the largest cost of a request. The key is the whole token, so a cached
// entry matches only the exact bytes that were verified.
type tokenCache struct {
	shards   [64]tokenShard
	perShard int
}

type tokenShard struct {
	mu sync.RWMutex
	m  map[string]*verifiedToken
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{perShard: max(size/64, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*verifiedToken)
	}
	return c
}

// shard picks by the token's last byte, which is signature material (the
// token was verified before it is stored, so it cannot be chosen freely).
func (c *tokenCache) shard(token string) *tokenShard {
	return &c.shards[token[len(token)-1]%64]
}

// get returns the cached token if it is still unexpired at now (with
// leeway) and its signing key is still published.
func (c *tokenCache) get(token string, now time.Time, leeway time.Duration, keyKnown func(kid string) bool) (*verifiedToken, bool) {
	s := c.shard(token)
	s.mu.RLock()
	v, ok := s.m[token]
	s.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if v.exp <= now.Add(-leeway).Unix() || !keyKnown(v.kid) {
		s.mu.Lock()
		delete(s.m, token)
		s.mu.Unlock()
		return nil, false
	}
	return v, true
}

func (c *tokenCache) put(token string, v *verifiedToken) {
	s := c.shard(token)
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		clear(s.m) // bounded; re-verification refills it
	}
	s.m[token] = v
	s.mu.Unlock()
}
