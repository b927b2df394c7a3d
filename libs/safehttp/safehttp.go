// Package safehttp is the outbound HTTP client for URLs that customers and
// partners control (webhook endpoints, partner JWKS). It refuses loopback,
// private, link-local, CGNAT, multicast, unspecified and cloud-metadata
// addresses at dial time — after DNS resolution, for every connection, so a
// DNS answer that changes between check and connect cannot slip through —
// follows no redirects, bounds time, and reads at most a small body.
//
// CheckURL applies the same address rules when a URL is registered, so a
// URL the dialer would refuse is refused up front with a clear message, and
// Describe turns a failed request into words a tenant may see.
package safehttp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrBlockedAddress is returned when a destination resolves to a refused address.
var ErrBlockedAddress = errors.New("destination address is not allowed")

// ErrTooLarge is returned by ReadBody when the body exceeds the limit.
var ErrTooLarge = errors.New("response body too large")

// blocked lists the ranges no customer-controlled request may reach, each
// with the name a refusal gives. The dialer and CheckURL share it; the
// first matching entry names the refusal, so narrower ranges come first.
var blocked = mustRanges(
	"0.0.0.0/8", "unspecified (\"this network\")",
	"10.0.0.0/8", "private",
	"100.64.0.0/10", "shared (CGNAT)",
	"127.0.0.0/8", "loopback",
	"169.254.169.254/32", "cloud metadata",
	"169.254.0.0/16", "link-local",
	"172.16.0.0/12", "private",
	"192.0.0.0/24", "IETF protocol assignment",
	"192.0.2.0/24", "documentation (TEST-NET-1)",
	"192.168.0.0/16", "private",
	"198.18.0.0/15", "benchmarking",
	"198.51.100.0/24", "documentation (TEST-NET-2)",
	"203.0.113.0/24", "documentation (TEST-NET-3)",
	"224.0.0.0/4", "multicast",
	"240.0.0.0/4", "reserved or broadcast",
	"::/128", "unspecified",
	"::1/128", "loopback",
	"::/96", "IPv4-compatible", // deprecated; ::127.0.0.1 must not count as public
	"::ffff:0:0/96", "IPv4-mapped", // Allowed judges the embedded IPv4 first
	"64:ff9b::/96", "NAT64",
	"64:ff9b:1::/48", "local-use NAT64",
	"100::/64", "discard",
	"2001:db8::/32", "documentation",
	"fd00:ec2::254/128", "cloud metadata", // AWS IMDS over IPv6
	"fc00::/7", "unique local (private)",
	"fe80::/10", "link-local",
	"ff00::/8", "multicast",
)

type blockedRange struct {
	prefix netip.Prefix
	what   string // "loopback", "private"...: what a refusal calls the address
}

// mustRanges takes CIDR, name pairs.
func mustRanges(pairs ...string) []blockedRange {
	out := make([]blockedRange, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, blockedRange{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// Options configure a client.
type Options struct {
	// Allow lists ranges that are reachable despite the rules above (for
	// example a test receiver on 127.0.0.0/8, or an internal partner).
	Allow []netip.Prefix
	// Timeout bounds a whole request (default 10s).
	Timeout time.Duration
	// MaxConnsPerHost bounds concurrent connections per destination (0 = no limit).
	MaxConnsPerHost int
}

// Policy decides whether an address may be dialled.
type Policy struct {
	allow []netip.Prefix
}

// NewPolicy returns the policy with the given exceptions.
func NewPolicy(allow []netip.Prefix) *Policy { return &Policy{allow: allow} }

// Allowed reports whether ip may be reached.
func (p *Policy) Allowed(ip netip.Addr) bool {
	return p.refusal(ip) == ""
}

// refusal returns what kind of refused address ip is ("loopback",
// "private"...), or "" when it may be reached. An allow-list entry wins over
// the blocked ranges; an IPv4-mapped address is judged as the IPv4 address
// it carries, because that is where a dual-stack socket connects.
func (p *Policy) refusal(ip netip.Addr) string {
	if !ip.IsValid() {
		return "invalid"
	}
	ip = ip.WithZone("")
	for _, a := range p.allow {
		if a.Contains(ip) || (ip.Is4In6() && a.Contains(ip.Unmap())) {
			return ""
		}
	}
	if ip.Is4In6() {
		return p.refusal(ip.Unmap())
	}
	for _, b := range blocked {
		if b.prefix.Contains(ip) {
			return b.what
		}
	}
	return ""
}

// control runs on every connection attempt with the resolved address.
func (p *Policy) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !p.Allowed(ip) {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, host)
	}
	return nil
}

// NewClient returns an http.Client that enforces the policy on every
// connection and never follows redirects (a 3xx is returned as is).
func NewClient(o Options) *http.Client {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	p := NewPolicy(o.Allow)
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would dial on our behalf and bypass the check
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    16,
		MaxConnsPerHost:        o.MaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  o.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// ReadBody reads at most limit bytes of r; more is ErrTooLarge.
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrTooLarge
	}
	return b, nil
}

// ParseAllowList parses comma-separated CIDRs or addresses (configuration).
func ParseAllowList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an address", item)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
