package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
)

// newTransport is shared by every upstream: keep-alive connections are the
// main cost saver at thousands of requests per second.
func newTransport(cfg Config) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // upstreams are in-cluster
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.UpstreamTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

func newProxy(target *url.URL, transport http.RoundTripper, pool httputil.BufferPool, logger *slog.Logger, service string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:  transport,
		BufferPool: pool,
		ErrorLog:   slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				w.WriteHeader(499) // the client went away; nobody reads this
				return
			}
			var open *breakerOpenError
			if errors.As(err, &open) {
				// Failing fast: the state change was logged once; a line
				// per refused request would flood the log.
				httpx.WriteError(w, &httpx.Error{Status: http.StatusServiceUnavailable, Code: httpx.CodeUnavailable,
					Message: "upstream service " + service + " unavailable", RetryAfter: open.retryAfter})
				return
			}
			logger.Warn("upstream request failed", "service", service, "method", r.Method,
				"path", r.URL.Path, "request_id", r.Header.Get(httpx.RequestIDHeader), "err", err)
			httpx.WriteError(w, &httpx.Error{Status: http.StatusBadGateway, Code: httpx.CodeUnavailable,
				Message: "upstream service " + service + " unavailable", RetryAfter: time.Second})
		},
	}
}

// identityHeaders are request headers that could make an upstream believe
// something about the caller; only the gateway may set them. Forwarding
// headers are dropped too and rebuilt from the connection.
var identityHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
	"X-Forwarded-User", "X-Forwarded-Email", "X-Remote-User", "Remote-User",
	"X-User-Id", "X-Subject", "X-Client-Id", "X-Org-Id", "X-Organization-Id", "X-Scopes",
	"X-Tenant-Id", "X-Auth-Request-User", "X-Auth-Request-Email",
}

// stripIdentity removes identity headers, including every X-Agentidp-*
// header (the signed context among them), from a client request.
func stripIdentity(h http.Header) {
	for _, name := range identityHeaders {
		delete(h, name)
	}
	for k := range h {
		if len(k) > 11 && strings.EqualFold(k[:11], "X-Agentidp-") {
			delete(h, k)
		}
	}
	delete(h, authn.Header)
}

// statusRecorder remembers the status written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

var recorderPool = sync.Pool{New: func() any { return new(statusRecorder) }}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (used by ReverseProxy) reach the
// underlying writer for flushing.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
