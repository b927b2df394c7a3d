package e2e

import (
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpProxy is the fault suite's own TCP proxy on a loopback port. It plays
// two parts: a cut in a connection path (services → PostgreSQL), which
// Cut closes every open connection and refuses new ones until Restore, and
// a round-robin load balancer in front of a service's replicas (what a
// Kubernetes Service is to the pods), from which a replica is removed
// before it is stopped, as the endpoints controller does. It counts the
// connections it accepted and the ones it refused, so a scenario can prove
// the cut really cut something.
type tcpProxy struct {
	t  *testing.T
	ln net.Listener

	mu       sync.Mutex
	backends []string
	next     int
	cut      bool
	latency  time.Duration         // added before each chunk from a backend
	open     map[net.Conn]struct{} // both sides of every proxied connection

	accepted atomic.Int64 // connections handed to a backend
	refused  atomic.Int64 // connections closed at once: cut, or no backend answered
	wg       sync.WaitGroup
}

// newTCPProxy listens on a fresh loopback port and forwards to backends
// (round robin; a backend that refuses the connection is skipped). It is
// closed with the test.
func newTCPProxy(t *testing.T, backends ...string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handedOut.Lock()
	handedOut.addrs[ln.Addr().String()] = true
	handedOut.Unlock()
	p := &tcpProxy{t: t, ln: ln, backends: slices.Clone(backends), open: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every proxied connection and refuses new ones (accepted and
// closed at once, as a peer that vanished would look to a client that
// reconnects) until Restore.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := make([]net.Conn, 0, len(p.open))
	for c := range p.open {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Restore lets connections through again.
func (p *tcpProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// SetLatency delays every chunk of data from a backend by d (0: none):
// a slow upstream, so that requests are in flight when a scenario needs
// them to be.
func (p *tcpProxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Remove takes a backend out of the rotation; its open connections stay
// (the replica drains them when it is stopped).
func (p *tcpProxy) Remove(backend string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends = slices.DeleteFunc(p.backends, func(b string) bool { return b == backend })
}

// Add puts a backend (back) into the rotation.
func (p *tcpProxy) Add(backend string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Contains(p.backends, backend) {
		p.backends = append(p.backends, backend)
	}
}

// Accepted is the number of connections forwarded to a backend so far.
func (p *tcpProxy) Accepted() int64 { return p.accepted.Load() }

// Refused is the number of connections closed at once (cut or no backend).
func (p *tcpProxy) Refused() int64 { return p.refused.Load() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.t.Logf("proxy %s: accept: %v", p.Addr(), err)
			}
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

// candidates returns the backends to try for one connection, starting at
// the next in the rotation, or nil when the path is cut.
func (p *tcpProxy) candidates() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || len(p.backends) == 0 {
		return nil
	}
	i := p.next % len(p.backends)
	p.next++
	return append(slices.Clone(p.backends[i:]), p.backends[:i]...)
}

func (p *tcpProxy) handle(client net.Conn) {
	var upstream net.Conn
	for _, b := range p.candidates() {
		c, err := net.DialTimeout("tcp", b, 2*time.Second)
		if err == nil {
			upstream = c
			break
		}
	}
	if upstream == nil {
		p.refused.Add(1)
		_ = client.Close()
		return
	}
	p.mu.Lock()
	if p.cut { // cut while dialling
		p.mu.Unlock()
		p.refused.Add(1)
		_ = client.Close()
		_ = upstream.Close()
		return
	}
	p.open[client] = struct{}{}
	p.open[upstream] = struct{}{}
	latency := p.latency
	p.mu.Unlock()
	p.accepted.Add(1)

	// Each direction ends by half-closing the other side's write, so an
	// HTTP server's "Connection: close" answer reaches the client whole;
	// both sides are closed when both directions are done.
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn, delay time.Duration) {
		defer wg.Done()
		copyDelayed(dst, src, delay)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go pipe(upstream, client, 0)
	go pipe(client, upstream, latency)
	wg.Wait()
	_ = client.Close()
	_ = upstream.Close()
	p.mu.Lock()
	delete(p.open, client)
	delete(p.open, upstream)
	p.mu.Unlock()
}

// copyDelayed copies src to dst, holding each chunk for delay first.
func copyDelayed(dst io.Writer, src io.Reader, delay time.Duration) {
	if delay <= 0 {
		_, _ = io.Copy(dst, src)
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(delay) // the injected latency itself
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *tcpProxy) close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
