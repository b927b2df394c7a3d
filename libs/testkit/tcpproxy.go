package testkit

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// TCPProxy forwards loopback connections to a target and can cut them, so a
// test can take a dependency (Redis, PostgreSQL) away and bring it back
// without touching the shared server. While cut it still accepts, and
// closes each connection at once: Accepted then counts the dial attempts a
// client made during the outage.
type TCPProxy struct {
	target   string
	ln       net.Listener
	accepted atomic.Int64
	cut      atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// StartTCPProxy listens on 127.0.0.1:0 and forwards to target (host:port)
// until the test ends.
func StartTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcp proxy listen: %v", err)
	}
	p := &TCPProxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.closeAll()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *TCPProxy) Addr() string { return p.ln.Addr().String() }

// Accepted is the number of connections accepted so far, cut or not.
func (p *TCPProxy) Accepted() int64 { return p.accepted.Load() }

// Cut closes every open connection and every new one until Restore.
func (p *TCPProxy) Cut() {
	p.cut.Store(true)
	p.closeAll()
}

// Restore forwards new connections again.
func (p *TCPProxy) Restore() { p.cut.Store(false) }

func (p *TCPProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

func (p *TCPProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut.Load() {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *TCPProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if p.cut.Load() {
			_ = c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *TCPProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		_ = c.Close()
		_ = up.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}
