package gateway

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/services/gateway/internal/opa"
	"github.com/google/uuid"
)

// Organisation statuses that stop every call.
const (
	orgSuspended = "suspended"
	orgDeleted   = "deleted"
)

// ServeHTTP runs the pipeline: route → authenticate → tier limit → policy
// → proxy.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := recorderPool.Get().(*statusRecorder)
	rec.ResponseWriter, rec.status = w, 0
	rc := g.serve(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	g.metrics.request(rc, status)
	rec.ResponseWriter = nil
	recorderPool.Put(rec)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) *routeCounters {
	h := r.Header
	// The client's address, read before the forwarding headers go.
	clientAddr, haveAddr := g.proxies.clientAddr(r)
	stripIdentity(h)
	rid := h.Get(httpx.RequestIDHeader)
	if rid == "" || len(rid) > 128 {
		rid = uuid.NewString()
		h.Set(httpx.RequestIDHeader, rid)
	}
	w.Header()[httpx.RequestIDHeader] = []string{rid}

	// An escaped path (e.g. %2F) can be split differently by an upstream
	// router than by the policy; no API path needs one.
	if r.URL.RawPath != "" || hasDotSegment(r.URL.Path) {
		httpx.WriteError(w, httpx.Validation("path must not contain escaped slashes or dot segments", nil))
		return &g.unmatched
	}
	path := normalizePath(r.URL.Path)
	if path == "/health/detailed" && r.Method == http.MethodGet {
		g.health.ServeHTTP(w, r)
		return &g.unmatched
	}
	rt := g.routes.match(r.Method, path)
	if rt == nil {
		httpx.WriteError(w, httpx.NotFound(httpx.CodeNotFound, "no such route"))
		return &g.unmatched
	}
	if rt.Public {
		// The client's address, signed: the token service throttles failed
		// client authentication per address and trusts no other source of
		// it (a client's X-Forwarded-For was stripped above; only a
		// trusted proxy's was read, GATEWAY_TRUSTED_PROXIES).
		if haveAddr {
			h[authn.ClientAddrHeader] = []string{g.codec.SignClientAddr(clientAddr)}
		}
		g.forward(w, r, rt)
		return &rt.counters
	}

	// 1. Authentication.
	token, ok := bearerToken(r)
	if !ok {
		g.unauthorized(w, "missing bearer token")
		return &rt.counters
	}
	tok, err := g.authenticate(r.Context(), token)
	if err != nil {
		var ae *authError
		if errors.As(err, &ae) {
			g.logger.Debug("token rejected", "reason", ae.reason, "err", ae.err, "request_id", rid)
			g.unauthorized(w, ae.reason)
			return &rt.counters
		}
		httpx.WriteError(w, httpx.Unavailable("gateway not ready", err))
		return &rt.counters
	}

	// Revocation, on every request: the token cache only saves the
	// signature check. The set is in memory, kept current through NATS KV.
	if !g.revocations.Ready() {
		httpx.WriteError(w, httpx.Unavailable("gateway not ready", nil))
		return &rt.counters
	}
	now := g.now()
	revoked := g.revocations.Set().Revoked(tok.rev)
	if !revoked && g.revocationStale(now) {
		// The local copy cannot be proven fresh: ask the token service,
		// and refuse when it cannot answer (fail closed).
		active, outcome, err := g.stale.check(r.Context(), token, tok, now, rid)
		g.metrics.revocationFallback.WithLabelValues(outcome).Inc()
		if err != nil {
			g.logger.Debug("revocation state stale and token service unreachable: refusing", "err", err, "request_id", rid)
			httpx.WriteError(w, httpx.Unavailable("revocation state unavailable", err))
			return &rt.counters
		}
		revoked = !active
	}
	if revoked {
		g.logger.Debug("token rejected", "reason", "revoked", "request_id", rid)
		g.metrics.deny(denyRevoked)
		w.Header()["Www-Authenticate"] = []string{`Bearer error="invalid_token", error_description="token revoked"`}
		httpx.WriteError(w, httpx.Unauthorized("token revoked"))
		return &rt.counters
	}

	// 2. Organisation status and daily call limit.
	if !g.orgs.Ready() {
		httpx.WriteError(w, httpx.Unavailable("gateway not ready", nil))
		return &rt.counters
	}
	limit := g.cfg.FreeCallsPerDay
	if org, known := g.orgs.Get(tok.orgID); known {
		if org.Status == orgSuspended || org.Status == orgDeleted {
			g.metrics.deny(denyTier)
			httpx.WriteError(w, httpx.Forbidden("organization is not active"))
			return &rt.counters
		}
		if org.MaxCallsPerDay != 0 {
			limit = org.MaxCallsPerDay
		}
	}
	u := g.limiter.take(r.Context(), tok.orgID, limit, now)
	u.setHeaders(w.Header())
	if !u.allowed {
		g.metrics.deny(denyTier)
		httpx.WriteError(w, httpx.TooMany(httpx.CodeTierLimit, "daily call limit of your tier reached", u.reset))
		return &rt.counters
	}

	// 3. Policy.
	d, err := g.policy.Decide(r.Context(), opa.Input{
		Method: r.Method, Path: path, Scopes: tok.scopes, Subject: tok.subject,
		OrganizationID: tok.orgID, Actors: tok.actors,
	})
	if err != nil {
		g.logger.Error("policy evaluation failed", "err", err, "request_id", rid)
		httpx.WriteError(w, httpx.Unavailable("authorization unavailable", err))
		return &rt.counters
	}
	if !d.Allow {
		g.metrics.deny(denyPolicy)
		httpx.WriteError(w, httpx.Forbidden(d.Reason))
		return &rt.counters
	}

	// 4. Signed internal context, bound to this request's method and the
	// path the upstream receives (what httputil.ReverseProxy.SetURL
	// forwards: the upstream's base path joined with the request path; the
	// query string is not part of it), then proxy.
	fwdPath := r.URL.Path
	if rt.basePath != "" {
		fwdPath = rt.basePath + fwdPath
	}
	signed, err := g.codec.Sign(authn.Identity{
		Subject: tok.subject, OrgID: tok.orgID, ClientID: tok.clientID,
		Scopes: tok.scopes, Actors: tok.actors, JTI: tok.jti, ExpiresAt: tok.exp, RequestID: rid,
		CredentialID: tok.rev.CredentialID, IssuedAtMs: tok.rev.IssuedAtMs,
		Method: r.Method, Path: fwdPath,
	})
	if err != nil {
		httpx.WriteError(w, httpx.Internal(err))
		return &rt.counters
	}
	h[authn.Header] = []string{signed}
	g.forward(w, r, rt)
	return &rt.counters
}

func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, rt *route) {
	start := time.Now()
	rt.proxy.ServeHTTP(w, r)
	rt.upstream.Observe(time.Since(start).Seconds())
}

func (g *Gateway) unauthorized(w http.ResponseWriter, reason string) {
	g.metrics.deny(denyAuth)
	w.Header()["Www-Authenticate"] = []string{`Bearer error="invalid_token"`}
	httpx.WriteError(w, httpx.Unauthorized(reason))
}

// hasDotSegment reports whether path has a "." or ".." segment.
func hasDotSegment(path string) bool {
	for path != "" {
		var seg string
		seg, path, _ = strings.Cut(path, "/")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
