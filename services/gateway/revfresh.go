package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/revocation"
	"golang.org/x/sync/singleflight"
)

// introspectionTimeout bounds one fallback introspection call: a token
// service that does not answer within it costs the request a 503, not a
// hang.
const introspectionTimeout = time.Second

// maxFallbackEntries bounds the per-jti cache of fallback answers; it is
// cleared when full (entries live at most the staleness bound anyway).
const maxFallbackEntries = 65536

// introspectScope is the scope the token service's introspection requires.
const introspectScope = "tokens:read"

// Outcomes of a fallback check (label values of
// agentidp_gateway_revocation_fallback_total).
const (
	fallbackActive  = "active"
	fallbackRevoked = "revoked"
	fallbackCached  = "cached"
	fallbackError   = "error"
)

// introspector asks the token service whether a token is active; the
// gateway uses it only while its revocation state is stale.
type introspector interface {
	Introspect(ctx context.Context, token string, tok *verifiedToken, requestID string) (active bool, err error)
}

// httpIntrospector calls the token service's RFC 7662 endpoint with a
// signed internal context naming the gateway, scoped to the token's own
// organisation and to tokens:read only — the least that endpoint accepts,
// and nothing the gateway does not already vouch for on every proxied
// request.
type httpIntrospector struct {
	url    string
	codec  *authn.Codec
	client *http.Client
}

func newHTTPIntrospector(tokenURL string, codec *authn.Codec, transport http.RoundTripper) *httpIntrospector {
	return &httpIntrospector{url: strings.TrimRight(tokenURL, "/") + "/oauth2/introspect", codec: codec,
		client: &http.Client{Transport: transport, Timeout: introspectionTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// Introspect implements introspector.
func (h *httpIntrospector) Introspect(ctx context.Context, token string, tok *verifiedToken, requestID string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return false, fmt.Errorf("introspection request: %w", err)
	}
	// The context is bound to this request's method and path, like every
	// context the gateway signs.
	signed, err := h.codec.Sign(authn.Identity{Subject: revocation.FallbackCaller, OrgID: tok.orgID, Scopes: []string{introspectScope},
		ExpiresAt: time.Now().Add(time.Minute).Unix(), RequestID: requestID, Method: http.MethodPost, Path: req.URL.Path})
	if err != nil {
		return false, fmt.Errorf("sign introspection context: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(authn.Header, signed)
	resp, err := h.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("introspect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return false, fmt.Errorf("introspect: token service answered %d", resp.StatusCode)
	}
	var out struct {
		Active *bool `json:"active"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil || out.Active == nil {
		return false, errors.New("introspect: malformed answer")
	}
	return *out.Active, nil
}

// staleGuard is the gateway's answer to a revocation state it cannot prove
// fresh: it checks tokens with the token service, remembers each "active"
// answer (by jti) for at most the staleness bound and each "inactive" one
// until the token expires, and lets one call per jti be in flight.
type staleGuard struct {
	introspector introspector
	bound        time.Duration
	flight       singleflight.Group

	mu      sync.Mutex
	answers map[string]fallbackAnswer
}

type fallbackAnswer struct {
	active bool
	until  int64 // Unix ns, by the gateway's clock
}

func newStaleGuard(in introspector, bound time.Duration) *staleGuard {
	return &staleGuard{introspector: in, bound: bound, answers: map[string]fallbackAnswer{}}
}

// check reports whether tok is still active per the token service; an
// error means nobody can tell, and the caller must refuse the request.
// The outcome is returned for the metric.
func (s *staleGuard) check(ctx context.Context, token string, tok *verifiedToken, now time.Time, rid string) (bool, string, error) {
	ns := now.UnixNano()
	s.mu.Lock()
	a, ok := s.answers[tok.jti]
	s.mu.Unlock()
	if ok && ns < a.until {
		return a.active, fallbackCached, nil
	}
	v, err, _ := s.flight.Do(tok.jti, func() (any, error) {
		// Not the request's context: a caller that gives up must not fail
		// the others waiting on the same call.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), introspectionTimeout)
		defer cancel()
		active, err := s.introspector.Introspect(cctx, token, tok, rid)
		if err != nil {
			return false, err
		}
		s.mu.Lock()
		if len(s.answers) >= maxFallbackEntries {
			clear(s.answers)
		}
		until := ns + int64(s.bound)
		if !active {
			// Revoked (or expired, or foreign) stays so: no need to ask
			// again while the token could be presented.
			until = max(until, tok.exp*int64(time.Second))
		}
		s.answers[tok.jti] = fallbackAnswer{active: active, until: until}
		s.mu.Unlock()
		return active, nil
	})
	if err != nil {
		return false, fallbackError, err
	}
	if v.(bool) {
		return true, fallbackActive, nil
	}
	return false, fallbackRevoked, nil
}

// revocationStale reports whether the revocation state is older than the
// bound at now: one atomic load and a comparison.
func (g *Gateway) revocationStale(now time.Time) bool {
	return now.UnixNano()-g.revocations.HeardNanos() > int64(g.cfg.RevocationMaxStaleness)
}

// revocationAge is the age of the revocation state at now.
func (g *Gateway) revocationAge(now time.Time) time.Duration {
	heard := g.revocations.HeardNanos()
	if heard == 0 {
		return 0
	}
	return time.Duration(now.UnixNano() - heard)
}

// watchFreshness logs once when the revocation state turns stale and once
// when it is fresh again, until ctx ends. Requests decide for themselves
// (revocationStale); this only reports.
func (g *Gateway) watchFreshness(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	stale := false
	var since time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !g.revocations.Ready() {
			continue
		}
		now := g.now()
		switch s := g.revocationStale(now); {
		case s && !stale:
			stale, since = true, now
			g.logger.Warn("revocation state stale: checking every token with the token service, 503 when it cannot answer",
				"age", g.revocationAge(now).String(), "max_staleness", g.cfg.RevocationMaxStaleness.String())
		case !s && stale:
			stale = false
			g.logger.Info("revocation state fresh again: local revocation checks resumed",
				"age", g.revocationAge(now).String(), "stale_for", now.Sub(since).String())
		}
	}
}
