package safehttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidURL is returned by CheckURL for a URL that is malformed or uses
// a form it does not accept (scheme, credentials, host syntax, port).
var ErrInvalidURL = errors.New("invalid URL")

// MaxURLLength is the longest URL CheckURL accepts.
const MaxURLLength = 2048

// DefaultResolveTimeout bounds the DNS lookup CheckURL makes.
const DefaultResolveTimeout = 3 * time.Second

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckOptions configure CheckURL.
type CheckOptions struct {
	// Allow lists ranges that may be reached despite the rules: the same
	// allow-list (the service's *_ALLOW_PRIVATE setting) its client dials with.
	Allow []netip.Prefix
	// RequireHTTPS refuses http:// URLs.
	RequireHTTPS bool
	// Resolver resolves host names (default net.DefaultResolver, which is
	// what the dialer uses).
	Resolver Resolver
	// ResolveTimeout bounds the lookup (default DefaultResolveTimeout).
	ResolveTimeout time.Duration
}

// CheckURL checks a URL a customer or partner gives us to call later
// (webhook endpoint, partner issuer or JWKS URI) against the rules the
// dialer enforces, so that what the dialer would refuse is refused at
// registration with a message naming the rule. It accepts an absolute
// http(s) URL with no credentials, a port in 1-65535 if any, and an ASCII
// host that is either
//
//   - an IP address, in any notation a C resolver or a browser accepts
//     (2130706433, 0x7f000001, 0177.0.0.1, 127.1, [::ffff:7f00:1]...), which
//     is normalised and must not be in a refused range; or
//   - a DNS name, not "localhost" nor under ".localhost" (RFC 6761: always
//     loopback), that is resolved now, as the dialer will, and refused if
//     any address it has is in a refused range.
//
// A name that does not resolve now is accepted: it cannot be judged, and
// the dialer checks every address again at connect time, which also covers
// a name whose answer changes later (DNS rebinding). Errors wrap
// ErrInvalidURL or ErrBlockedAddress and their text is fit for the caller:
// it never names an address the name resolved to.
func CheckURL(ctx context.Context, raw string, o CheckOptions) error {
	u, err := parseURL(raw, o.RequireHTTPS)
	if err != nil {
		return err
	}
	p := NewPolicy(o.Allow)
	host := u.Hostname() // what the transport hands the dialer, brackets and port removed
	if host == "" {
		return invalid("must name a host")
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			// The transport maps non-ASCII names through IDNA (full-width
			// digits become digits); accepting only the ASCII form keeps
			// what we check and what it dials the same.
			return invalid("host must be ASCII (write an internationalised name in its xn-- form)")
		}
	}
	if strings.HasPrefix(u.Host, "[") || strings.Contains(host, ":") {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return invalid("host is not a valid IPv6 address")
		}
		if ip.Zone() != "" {
			return invalid("host must not carry an IPv6 zone")
		}
		return p.checkLiteral(host, ip)
	}
	name := strings.ToLower(host)
	// One trailing dot makes a name absolute; a resolver and a browser both
	// read "127.0.0.1." as 127.0.0.1 and "localhost." as localhost.
	name = strings.TrimSuffix(name, ".")
	if name == "" || strings.HasSuffix(name, ".") || strings.HasPrefix(name, ".") || strings.Contains(name, "..") {
		return invalid("host has an empty label")
	}
	labels := strings.Split(name, ".")
	if numericLabel(labels[len(labels)-1]) {
		// A browser (WHATWG URL) parses a host ending in a number as IPv4
		// or fails; inet_aton accepts the same notations. Either way it is
		// never a DNS name we should look up.
		ip, ok := parseIPv4(labels)
		if !ok {
			return invalid("host looks like an IPv4 address but is not a valid one")
		}
		return p.checkLiteral(host, ip)
	}
	if len(name) > 253 {
		return invalid("host name is longer than 253 characters")
	}
	for _, l := range labels {
		if !validLabel(l) {
			return invalid("host name may contain only letters, digits, '-' and '_' in labels of 1 to 63 characters")
		}
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		// Always loopback (RFC 6761), whatever DNS says.
		if p.Allowed(netip.AddrFrom4([4]byte{127, 0, 0, 1})) || p.Allowed(netip.IPv6Loopback()) {
			return nil
		}
		return fmt.Errorf("%w: host %q is a loopback name", ErrBlockedAddress, host)
	}
	return p.checkName(ctx, host, o)
}

// parseURL checks the parts of the URL other than the host.
func parseURL(raw string, requireHTTPS bool) (*url.URL, error) {
	if len(raw) > MaxURLLength {
		return nil, invalid(fmt.Sprintf("must be at most %d characters", MaxURLLength))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return nil, invalid("must be an absolute http(s) URL")
	}
	switch u.Scheme { // url.Parse lower-cases it
	case "https":
	case "http":
		if requireHTTPS {
			return nil, invalid("must use https")
		}
	default:
		return nil, invalid("must use http or https")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return nil, invalid("must not contain credentials")
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return nil, invalid("port must be a number from 1 to 65535")
		}
	}
	return u, nil
}

// checkLiteral refuses an IP address in a blocked range; the message shows
// the normalised address, which the caller wrote in some notation.
func (p *Policy) checkLiteral(host string, ip netip.Addr) error {
	if what := p.refusal(ip); what != "" {
		if host == ip.String() {
			return fmt.Errorf("%w: %s is a %s address", ErrBlockedAddress, host, what)
		}
		return fmt.Errorf("%w: host %q is the address %s, a %s address", ErrBlockedAddress, host, ip, what)
	}
	return nil
}

// checkName resolves host as the dialer will and refuses it when any address
// is refused. The addresses are not named in the error: to whoever
// registers a URL they would reveal our internal DNS.
func (p *Policy) checkName(ctx context.Context, host string, o CheckOptions) error {
	r := o.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	timeout := o.ResolveTimeout
	if timeout <= 0 {
		timeout = DefaultResolveTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addrs, err := r.LookupNetIP(rctx, "ip", host)
	if err != nil {
		// Not resolvable now is not proof of danger; the dialer decides.
		return nil
	}
	for _, a := range addrs {
		if what := p.refusal(a); what != "" {
			return fmt.Errorf("%w: host %q resolves to a %s address", ErrBlockedAddress, host, what)
		}
	}
	return nil
}

func invalid(msg string) error { return fmt.Errorf("%w: %s", ErrInvalidURL, msg) }

// numericLabel reports whether a label is a number in the notations of
// inet_aton and the WHATWG URL standard: decimal, octal (leading 0) or hex
// (0x). Such a last label makes the host an IPv4 address or invalid.
func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		for _, c := range l[2:] {
			if !isHex(c) {
				return false
			}
		}
		return true
	}
	for _, c := range l {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isHex(c rune) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// parseIPv4 parses the 1 to 4 parts of an IPv4 address as inet_aton and
// browsers do: each part decimal, octal (leading 0) or hex (0x, "0x" alone
// being 0); every part but the last is one byte, and the last fills the
// remaining bytes, so "127.1" is 127.0.0.1 and "2130706433" is 127.0.0.1.
func parseIPv4(parts []string) (netip.Addr, bool) {
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, part := range parts {
		n, ok := parseIPv4Part(part)
		if !ok {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 0xff {
				return netip.Addr{}, false
			}
			v = v<<8 | n
			continue
		}
		rest := uint(4 - i) // bytes the last part fills
		if n >= 1<<(8*rest) {
			return netip.Addr{}, false
		}
		v = v<<(8*rest) | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func parseIPv4Part(s string) (uint64, bool) {
	base := 10
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		s, base = s[2:], 16
		if s == "" {
			return 0, true
		}
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	if s == "" || len(s) > 32 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil || n > 0xffffffff {
		return 0, false
	}
	return n, true
}

// validLabel allows letters, digits, '-' and '_' (in use in real names,
// e.g. SRV-style service labels), 1 to 63 of them, no '-' at either end.
func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// ValidateURL is CheckURL with positional options, returning the parsed
// URL; kept for callers written against it.
func ValidateURL(ctx context.Context, raw string, allow []netip.Prefix, requireHTTPS bool) (*url.URL, error) {
	if err := CheckURL(ctx, raw, CheckOptions{Allow: allow, RequireHTTPS: requireHTTPS}); err != nil {
		return nil, err
	}
	return url.Parse(raw)
}
