package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies are the networks of load balancers in front of the
// gateway whose X-Forwarded-For is believed (GATEWAY_TRUSTED_PROXIES).
// Without any, the client address is the connection's peer: behind an L7
// load balancer every client would then share its address, and one
// attacker's failed logins would throttle everyone's.
type trustedProxies []netip.Prefix

// parseTrustedProxies reads a comma-separated list of CIDRs or addresses.
func parseTrustedProxies(s string) (trustedProxies, error) {
	var out trustedProxies
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", f)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address of the client that sent r: the connection's
// peer, unless that peer is a trusted proxy, in which case the nearest
// address in X-Forwarded-For that is not itself a trusted proxy (read
// right to left: entries left of the first untrusted hop were written by
// the client and prove nothing). It must be read before the forwarding
// headers are stripped.
func (t trustedProxies) clientAddr(r *http.Request) (string, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "", false
	}
	if len(t) == 0 {
		return host, true
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !t.contains(peer) {
		return host, true
	}
	addr := peer
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		hops := strings.Split(values[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil {
				// A garbled hop: stop at the last address we could trust.
				return addr.Unmap().String(), true
			}
			addr = a
			if !t.contains(a) {
				return a.Unmap().String(), true
			}
		}
	}
	return addr.Unmap().String(), true
}
