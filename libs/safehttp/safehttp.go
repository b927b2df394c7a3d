// Package safehttp is the outbound HTTP client for URLs that customers and
// partners control (webhook endpoints, partner JWKS). It refuses loopback,
// private, link-local, CGNAT, multicast, unspecified and cloud-metadata
// addresses at dial time — after DNS resolution, for every connection, so a
// DNS answer that changes between check and connect cannot slip through —
// follows no redirects, bounds time, and reads at most a small body.
package safehttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrBlockedAddress is returned when a destination resolves to a refused address.
var ErrBlockedAddress = errors.New("destination address is not allowed")

// ErrTooLarge is returned by ReadBody when the body exceeds the limit.
var ErrTooLarge = errors.New("response body too large")

// blocked lists the ranges no customer-controlled request may reach.
var blocked = mustPrefixes(
	"0.0.0.0/8",         // "this" network
	"10.0.0.0/8",        // private
	"100.64.0.0/10",     // CGNAT
	"127.0.0.0/8",       // loopback
	"169.254.0.0/16",    // link-local, incl. 169.254.169.254 metadata
	"172.16.0.0/12",     // private
	"192.0.0.0/24",      // IETF protocol assignments
	"192.0.2.0/24",      // TEST-NET-1
	"192.168.0.0/16",    // private
	"198.18.0.0/15",     // benchmarking
	"198.51.100.0/24",   // TEST-NET-2
	"203.0.113.0/24",    // TEST-NET-3
	"224.0.0.0/4",       // multicast
	"240.0.0.0/4",       // reserved, broadcast
	"::/128",            // unspecified
	"::1/128",           // loopback
	"::ffff:0:0/96",     // IPv4-mapped (checked again as IPv4 below)
	"64:ff9b::/96",      // NAT64 to IPv4
	"100::/64",          // discard
	"fc00::/7",          // unique local
	"fe80::/10",         // link-local
	"ff00::/8",          // multicast
	"fd00:ec2::254/128", // AWS IMDS over IPv6
)

func mustPrefixes(cidrs ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(cidrs))
	for i, c := range cidrs {
		out[i] = netip.MustParsePrefix(c)
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
	ip = ip.WithZone("")
	for _, a := range p.allow {
		if a.Contains(ip) || (ip.Is4In6() && a.Contains(ip.Unmap())) {
			return true
		}
	}
	if ip.Is4In6() {
		return p.Allowed(ip.Unmap())
	}
	for _, b := range blocked {
		if b.Contains(ip) {
			return false
		}
	}
	return ip.IsValid()
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

// ValidateURL checks a customer-supplied URL at registration time: http or
// https, a host, no credentials, and — when the host is an IP literal or
// resolves now — no refused address. Dial-time checks still apply later.
func ValidateURL(ctx context.Context, raw string, allow []netip.Prefix, requireHTTPS bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("must be an absolute http(s) URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if requireHTTPS {
			return nil, errors.New("must use https")
		}
	default:
		return nil, errors.New("must use http or https")
	}
	if u.User != nil {
		return nil, errors.New("must not contain credentials")
	}
	if len(raw) > 2048 {
		return nil, errors.New("must be at most 2048 characters")
	}
	p := NewPolicy(allow)
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if !p.Allowed(ip) {
			return nil, fmt.Errorf("%w: %s", ErrBlockedAddress, host)
		}
		return u, nil
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		if !p.Allowed(netip.MustParseAddr("127.0.0.1")) {
			return nil, fmt.Errorf("%w: %s", ErrBlockedAddress, host)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		// Unresolvable now is not proof of danger; dial-time checks decide.
		return u, nil
	}
	for _, a := range addrs {
		if !p.Allowed(a) {
			return nil, fmt.Errorf("%w: %s resolves to %s", ErrBlockedAddress, host, a)
		}
	}
	return u, nil
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
