package safehttp

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func TestPolicy(t *testing.T) {
	t.Parallel()
	p := NewPolicy(nil)
	tests := []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"2606:4700::1111", true},
		{"127.0.0.1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd00:ec2::254", false},
		{"224.0.0.1", false},
	}
	for _, tt := range tests {
		if got := p.Allowed(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Allowed(%s) = %v; want %v", tt.ip, got, tt.want)
		}
	}
	allowLoop := NewPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	if !allowLoop.Allowed(netip.MustParseAddr("127.0.0.1")) || allowLoop.Allowed(netip.MustParseAddr("10.0.0.1")) {
		t.Error("an allow-list of 127.0.0.0/8 must allow loopback and nothing else")
	}
}

func TestClientRefusesBlockedAddressWithoutConnecting(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := NewClient(Options{})
	for _, url := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		_, err := c.Get(url)
		if !errors.Is(err, ErrBlockedAddress) {
			t.Errorf("Get(%s) error = %v; want ErrBlockedAddress", url, err)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("refused destination saw %d connections; want 0", n)
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("redirect was followed") }))
	defer target.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusFound)
	}))
	defer srv.Close()
	c := NewClient(Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status = %d; want the 302 itself", resp.StatusCode)
	}
}

func TestReadBody(t *testing.T) {
	t.Parallel()
	if _, err := ReadBody(strings.NewReader(strings.Repeat("a", 11)), 10); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadBody(11 bytes, 10) error = %v; want ErrTooLarge", err)
	}
	if b, err := ReadBody(strings.NewReader("ok"), 10); err != nil || string(b) != "ok" {
		t.Errorf("ReadBody(ok) = %q, %v", b, err)
	}
}

func TestParseAllowList(t *testing.T) {
	t.Parallel()
	got, err := ParseAllowList("127.0.0.0/8, 10.0.0.5")
	if err != nil || len(got) != 2 || got[1].Bits() != 32 {
		t.Errorf("ParseAllowList = %v, %v", got, err)
	}
	if _, err := ParseAllowList("nope"); err == nil {
		t.Error("ParseAllowList(nope) succeeded; want an error")
	}
}
