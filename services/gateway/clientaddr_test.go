package gateway

import (
	"net/http/httptest"
	"testing"
)

// TestClientAddrBehindTrustedProxies: only a trusted load balancer's
// X-Forwarded-For is read, right to left, stopping at the first hop that is
// not a trusted proxy; whatever a client writes to the left of that hop
// cannot choose its address. Without trusted proxies the peer is the client.
func TestClientAddrBehindTrustedProxies(t *testing.T) {
	t.Parallel()
	lb, err := parseTrustedProxies(" 10.0.0.0/8, 192.168.1.7 ,::ffff:172.16.0.0/108")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		proxies trustedProxies
		peer    string
		xff     []string
		want    string
	}{
		{"no trusted proxies: peer, header ignored", nil, "10.1.2.3:5000", []string{"6.6.6.6"}, "10.1.2.3"},
		{"untrusted peer: header ignored", lb, "203.0.113.9:5000", []string{"6.6.6.6"}, "203.0.113.9"},
		{"trusted peer: its client", lb, "10.1.2.3:5000", []string{"198.51.100.4"}, "198.51.100.4"},
		{"spoofed entries left of the real client", lb, "10.1.2.3:5000", []string{"6.6.6.6, 7.7.7.7, 198.51.100.4"}, "198.51.100.4"},
		{"chain of trusted proxies", lb, "10.1.2.3:5000", []string{"198.51.100.4, 192.168.1.7", "10.9.9.9"}, "198.51.100.4"},
		{"single address entry", lb, "192.168.1.7:1", []string{"198.51.100.5"}, "198.51.100.5"},
		{"mapped CIDR", lb, "172.16.3.4:1", []string{"198.51.100.6"}, "198.51.100.6"},
		{"trusted peer without header: peer", lb, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"garbled hop: last trusted address", lb, "10.1.2.3:5000", []string{"198.51.100.4, not-an-ip"}, "10.1.2.3"},
		{"all hops trusted: leftmost", lb, "10.1.2.3:5000", []string{"10.4.4.4, 10.5.5.5"}, "10.4.4.4"},
		{"IPv6 client", lb, "10.1.2.3:5000", []string{"2001:db8::1"}, "2001:db8::1"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("POST", "/oauth2/token", nil)
		r.RemoteAddr = tc.peer
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got, ok := tc.proxies.clientAddr(r)
		if !ok || got != tc.want {
			t.Errorf("%s: Got(clientAddr) = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/8/1"} {
		if _, err := parseTrustedProxies(bad); err == nil {
			t.Errorf("Got(parseTrustedProxies(%q)) = nil error; want one", bad)
		}
	}
}
