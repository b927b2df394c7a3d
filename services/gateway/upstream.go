package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// upstreamTransport carries the gateway's common requests — plain HTTP
// upstreams, no body or a small body of known length, no protocol upgrade —
// synchronously on pooled HTTP/1.1 connections, in the goroutine of the
// request being proxied: write the request, read the response, hand the
// body to the caller. http.Transport runs a reader and a writer goroutine
// per connection and passes every request and response between them, and
// each handoff can wake another thread; on a small machine at low
// concurrency that costs about a third of the proxy hop (docs/benchmarks.md).
// Every other request goes to the fallback transport.
//
// A pooled connection is checked before reuse (a non-blocking peek tells
// whether the upstream closed it while idle), is dropped after idleTimeout
// unused (upstreams close theirs after two minutes), and a request that
// fails on a reused connection before any response byte arrived is retried
// once on a new connection if it is replayable, as http.Transport does.
type upstreamTransport struct {
	fallback      http.RoundTripper
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout time.Duration // bounds writing the request and reading the response headers
	idleTimeout   time.Duration
	maxIdle       int // per upstream address
	now           func() time.Time

	mu     sync.Mutex
	idle   map[string][]*upstreamConn // by host:port, oldest first
	closed bool
}

// maxDirectBody is the largest request body sent on the direct path. Small
// bodies fit in the socket buffers, so writing one cannot block on an
// upstream that answers before reading it; larger or unknown-length bodies
// go through http.Transport, which writes and reads concurrently.
const maxDirectBody = 64 << 10

func newUpstreamTransport(cfg Config, fallback http.RoundTripper) *upstreamTransport {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &upstreamTransport{
		fallback:      fallback,
		dial:          d.DialContext,
		headerTimeout: cfg.UpstreamTimeout,
		idleTimeout:   30 * time.Second,
		maxIdle:       256,
		now:           time.Now,
		idle:          map[string][]*upstreamConn{},
	}
}

// direct reports whether r can take the synchronous path.
func direct(r *http.Request) bool {
	if r.URL.Scheme != "http" || r.Header.Get("Upgrade") != "" {
		return false
	}
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength > 0 && r.ContentLength <= maxDirectBody
}

// replayable mirrors http.Transport: a request without a body (or one that
// can be recreated) whose method is idempotent or that carries an
// idempotency key may be sent again.
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// RoundTrip implements http.RoundTripper.
func (t *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !direct(r) {
		return t.fallback.RoundTrip(r)
	}
	addr := r.URL.Host
	if r.URL.Port() == "" {
		addr = net.JoinHostPort(r.URL.Hostname(), "80")
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.conn(r.Context(), addr)
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(r, t.headerTimeout)
		if err == nil {
			return resp, nil
		}
		pc.close()
		if ctxErr := r.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if reused && attempt == 0 && pc.read == 0 && replayable(r) {
			if r.GetBody != nil {
				if r.Body, err = r.GetBody(); err != nil {
					return nil, err
				}
			}
			continue
		}
		return nil, err
	}
}

// conn returns a live idle connection to addr, newest first, or dials one.
func (t *upstreamTransport) conn(ctx context.Context, addr string) (*upstreamConn, bool, error) {
	now := t.now()
	t.mu.Lock()
	for {
		conns := t.idle[addr]
		n := len(conns)
		if n == 0 {
			break
		}
		pc := conns[n-1]
		conns[n-1] = nil
		t.idle[addr] = conns[:n-1]
		if now.Sub(pc.idleSince) >= t.idleTimeout {
			// Everything below it is older still.
			for _, old := range conns[:n-1] {
				old.close()
			}
			t.idle[addr] = nil
			pc.close()
			break
		}
		t.mu.Unlock()
		if pc.alive() {
			return pc, true, nil
		}
		pc.close()
		t.mu.Lock()
	}
	t.mu.Unlock()
	c, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	pc := &upstreamConn{t: t, addr: addr, c: c}
	pc.br = bufio.NewReaderSize(countingReader{pc}, 4<<10)
	pc.bw = bufio.NewWriterSize(c, 4<<10)
	return pc, false, nil
}

// put returns pc to the idle pool, or closes it when the pool is full or
// the transport is closed.
func (t *upstreamTransport) put(pc *upstreamConn) {
	if pc.br.Buffered() > 0 { // bytes after the response: out of sync
		pc.close()
		return
	}
	now := t.now()
	pc.idleSince = now
	t.mu.Lock()
	conns := t.idle[pc.addr]
	expired := 0
	for expired < len(conns) && now.Sub(conns[expired].idleSince) >= t.idleTimeout {
		conns[expired].close()
		conns[expired] = nil // the backing array outlives the slice
		expired++
	}
	conns = conns[expired:]
	if t.closed || len(conns) >= t.maxIdle {
		t.idle[pc.addr] = conns
		t.mu.Unlock()
		pc.close()
		return
	}
	t.idle[pc.addr] = append(conns, pc)
	t.mu.Unlock()
}

// CloseIdleConnections closes the idle connections of both paths; once
// called (at shutdown), connections in use are closed when they finish.
func (t *upstreamTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*upstreamConn{}
	t.closed = true
	t.mu.Unlock()
	for _, conns := range idle {
		for _, pc := range conns {
			pc.close()
		}
	}
	if c, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// upstreamConn is one pooled HTTP/1.1 connection.
type upstreamConn struct {
	t         *upstreamTransport
	addr      string
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	read      int64 // bytes read during the current round trip
	idleSince time.Time
}

// countingReader counts what the connection's reader takes from the socket,
// so a failed round trip knows whether any response byte arrived.
type countingReader struct{ pc *upstreamConn }

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.pc.c.Read(p)
	r.pc.read += int64(n)
	return n, err
}

// errHeaderTimeout is what a caller sees when an upstream takes longer than
// the header timeout.
var errHeaderTimeout = errors.New("timeout awaiting upstream response headers")

// aLongTimeAgo is a deadline that makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes r and reads the response headers; the body stays on the
// connection and is read through the returned response.
func (pc *upstreamConn) roundTrip(r *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	pc.read = 0
	if headerTimeout > 0 {
		_ = pc.c.SetDeadline(pc.t.now().Add(headerTimeout))
	}
	// The client going away ends the exchange: blocked I/O returns, and the
	// connection, in an unknown state, is closed.
	stop := context.AfterFunc(r.Context(), func() { _ = pc.c.SetDeadline(aLongTimeAgo) })
	resp, err := pc.exchange(r)
	if err != nil {
		stop()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && r.Context().Err() == nil {
			return nil, errHeaderTimeout
		}
		return nil, err
	}
	_ = pc.c.SetDeadline(time.Time{})
	body := &upstreamBody{rc: resp.Body, pc: pc, stop: stop, reuse: !resp.Close && !r.Close}
	if resp.Body == http.NoBody {
		body.eof = true
	}
	resp.Body = body
	return resp, nil
}

func (pc *upstreamConn) exchange(r *http.Request) (*http.Response, error) {
	if err := r.Write(pc.bw); err != nil {
		return nil, err
	}
	if err := pc.bw.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(pc.br, r)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			// Upgrades take the fallback path; an unasked-for 101 is a
			// broken upstream.
			return nil, fmt.Errorf("upstream switched protocols without an upgrade request")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue // 100 Continue, 103 Early Hints: the final response follows
		}
		return resp, nil
	}
}

func (pc *upstreamConn) close() { _ = pc.c.Close() }

// upstreamBody returns its connection to the pool once the response body
// has been read to the end and closed; a body closed early closes the
// connection instead (its remaining bytes are not worth draining).
type upstreamBody struct {
	rc     io.ReadCloser
	pc     *upstreamConn
	stop   func() bool
	reuse  bool
	eof    bool
	closed bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *upstreamBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	// stop reports false when the cancellation already fired (or is
	// firing): the connection's deadline is spoiled.
	stopped := b.stop()
	if !b.eof || !b.reuse || !stopped {
		b.pc.close() // before rc.Close, which would otherwise drain the rest
		_ = b.rc.Close()
		return nil
	}
	_ = b.rc.Close()
	b.pc.t.put(b.pc)
	return nil
}
