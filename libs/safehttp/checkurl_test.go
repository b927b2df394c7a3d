package safehttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// fakeResolver answers from a map; a missing name is "no such host".
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.96.0.10:53", IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

var testResolver = fakeResolver{
	"hooks.example.com":      {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
	"hooks.example.com.":     {"93.184.216.34"},
	"internal.example.com":   {"10.1.2.3"},
	"split.example.com":      {"93.184.216.34", "127.0.0.1"},
	"rebind.example.com":     {"169.254.169.254"},
	"v6-private.example.com": {"fd12::1"},
	"cgnat.example.com":      {"100.64.1.1"},
	"mapped.example.com":     {"::ffff:10.0.0.1"},
	"localhost.":             {"93.184.216.34"}, // a lying resolver must not matter
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
		want error // nil, ErrInvalidURL or ErrBlockedAddress
	}{
		// Allowed.
		{"public IPv4 literal", "http://93.184.216.34/hook", nil},
		{"public IPv4 literal with port", "https://93.184.216.34:8443/hook", nil},
		{"public IPv6 literal", "https://[2606:4700::1111]/hook", nil},
		{"public name", "https://hooks.example.com/hook?x=1", nil},
		{"public name, trailing dot", "https://hooks.example.com./hook", nil},
		{"public name, upper case scheme", "HTTPS://hooks.example.com/hook", nil},
		{"unresolvable name: dialer decides", "https://not-yet.example.org/hook", nil},
		{"public decimal integer", "http://1572395042/", nil}, // 93.184.216.34
		{"public name with digits", "https://1password.example.com/", nil},
		{"numeric-looking label not last", "https://0x7f.example.com/", nil},

		// IPv4 in disguise.
		{"dotted loopback", "http://127.0.0.1/", ErrBlockedAddress},
		{"decimal integer", "http://2130706433/", ErrBlockedAddress},
		{"hex integer", "http://0x7f000001/", ErrBlockedAddress},
		{"hex integer upper case", "http://0X7F000001/", ErrBlockedAddress},
		{"octal first byte", "http://0177.0.0.1/", ErrBlockedAddress},
		{"octal integer", "http://017700000001/", ErrBlockedAddress},
		{"short form a.b", "http://127.1/", ErrBlockedAddress},
		{"short form a.b.c", "http://127.0.1/", ErrBlockedAddress},
		{"short form private", "http://10.1/", ErrBlockedAddress},
		{"mixed hex, octal, decimal", "http://0x7f.0.00.1/", ErrBlockedAddress},
		{"mixed hex bytes", "http://0xa9.0xfe.0xa9.0xfe/", ErrBlockedAddress}, // 169.254.169.254
		{"hex last part fills three bytes", "http://10.0xabcdef/", ErrBlockedAddress},
		{"zero", "http://0/", ErrBlockedAddress},
		{"0x alone is zero", "http://0x/", ErrBlockedAddress},
		{"trailing dot on literal", "http://127.0.0.1./", ErrBlockedAddress},
		{"metadata", "http://169.254.169.254/latest/meta-data", ErrBlockedAddress},
		{"CGNAT literal", "http://100.64.0.1/", ErrBlockedAddress},
		{"multicast literal", "http://224.0.0.1/", ErrBlockedAddress},
		{"broadcast", "http://255.255.255.255/", ErrBlockedAddress},
		{"too many parts", "http://1.2.3.4.5/", ErrInvalidURL},
		{"byte overflow", "http://256.0.0.1/", ErrInvalidURL},
		{"last part overflow", "http://127.16777216/", ErrInvalidURL},
		{"integer overflow", "http://4294967296/", ErrInvalidURL},
		{"bad octal", "http://08.0.0.1/", ErrInvalidURL},
		{"empty label", "http://127..1/", ErrInvalidURL},

		// IPv6.
		{"IPv6 loopback", "http://[::1]/", ErrBlockedAddress},
		{"IPv6 unspecified", "http://[::]/", ErrBlockedAddress},
		{"IPv4-mapped dotted", "http://[::ffff:127.0.0.1]/", ErrBlockedAddress},
		{"IPv4-mapped hex", "http://[::ffff:7f00:1]/", ErrBlockedAddress},
		{"IPv4-mapped metadata", "http://[::ffff:a9fe:a9fe]/", ErrBlockedAddress},
		{"IPv4-compatible", "http://[::127.0.0.1]/", ErrBlockedAddress},
		{"IPv4-compatible public", "http://[::93.184.216.34]/", ErrBlockedAddress},
		{"NAT64", "http://[64:ff9b::7f00:1]/", ErrBlockedAddress},
		{"link-local", "http://[fe80::1]/", ErrBlockedAddress},
		{"zone id", "http://[fe80::1%25eth0]/", ErrInvalidURL},
		{"zone id on public", "http://[2606:4700::1111%25eth0]/", ErrInvalidURL},
		{"unique local", "http://[fd00::1]/", ErrBlockedAddress},
		{"AWS IMDS IPv6", "http://[fd00:ec2::254]/", ErrBlockedAddress},
		{"not an address in brackets", "http://[localhost]/", ErrInvalidURL},

		// Names.
		{"localhost", "http://localhost/", ErrBlockedAddress},
		{"localhost trailing dot", "http://localhost./", ErrBlockedAddress},
		{"localhost upper case", "http://LOCALHOST:8080/", ErrBlockedAddress},
		{"sub.localhost", "http://evil.localhost/", ErrBlockedAddress},
		{"sub.localhost trailing dot", "http://a.b.localhost./", ErrBlockedAddress},
		{"name resolving private", "https://internal.example.com/", ErrBlockedAddress},
		{"name resolving to public and loopback", "https://split.example.com/", ErrBlockedAddress},
		{"name resolving to metadata", "https://rebind.example.com/", ErrBlockedAddress},
		{"name resolving to unique local", "https://v6-private.example.com/", ErrBlockedAddress},
		{"name resolving to CGNAT", "https://cgnat.example.com/", ErrBlockedAddress},
		{"name resolving to mapped private", "https://mapped.example.com/", ErrBlockedAddress},
		{"two trailing dots", "http://localhost../", ErrInvalidURL},
		{"lone dot", "http://./", ErrInvalidURL},
		{"non-ASCII digits", "http://１２７.０.０.１/", ErrInvalidURL},
		{"non-ASCII name", "http://ｌｏｃａｌｈｏｓｔ/", ErrInvalidURL},
		{"label with odd characters", "http://a!b.example.com/", ErrInvalidURL},
		{"label too long", "http://" + strings.Repeat("a", 64) + ".example.com/", ErrInvalidURL},

		// Everything else in the URL.
		{"empty host", "http:///hook", ErrInvalidURL},
		{"empty host with port", "http://:80/hook", ErrInvalidURL},
		{"relative", "/hook", ErrInvalidURL},
		{"opaque", "http:127.0.0.1", ErrInvalidURL},
		{"no scheme", "//hooks.example.com/", ErrInvalidURL},
		{"ftp", "ftp://hooks.example.com/", ErrInvalidURL},
		{"file", "file:///etc/passwd", ErrInvalidURL},
		{"gopher", "gopher://127.0.0.1:25/", ErrInvalidURL},
		{"javascript", "javascript:alert(1)", ErrInvalidURL},
		{"userinfo before loopback", "http://evil@127.0.0.1/", ErrInvalidURL},
		{"userinfo looking like a host", "http://hooks.example.com@127.0.0.1/", ErrInvalidURL},
		{"userinfo with password", "https://u:p@hooks.example.com/", ErrInvalidURL},
		{"port zero", "http://hooks.example.com:0/", ErrInvalidURL},
		{"port too large", "http://hooks.example.com:65536/", ErrInvalidURL},
		{"port not a number", "http://hooks.example.com:http/", ErrInvalidURL},
		{"too long", "https://hooks.example.com/" + strings.Repeat("a", MaxURLLength), ErrInvalidURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckURL(context.Background(), tt.url, CheckOptions{Resolver: testResolver})
			switch {
			case tt.want == nil && err != nil:
				t.Errorf("CheckURL(%q) = %v; want nil", tt.url, err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("CheckURL(%q) = %v; want %v", tt.url, err, tt.want)
			}
		})
	}
}

func TestCheckURLNamesTheRuleNotTheResolvedAddress(t *testing.T) {
	t.Parallel()
	o := CheckOptions{Resolver: testResolver}
	err := CheckURL(context.Background(), "http://0x7f000001/", o)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1") || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("CheckURL(0x7f000001) = %v; want it to name 127.0.0.1 and loopback", err)
	}
	err = CheckURL(context.Background(), "https://internal.example.com/", o)
	if err == nil || strings.Contains(err.Error(), "10.1.2.3") || !strings.Contains(err.Error(), "private") {
		t.Errorf("CheckURL(internal name) = %v; want the rule (private) without the resolved address", err)
	}
}

func TestCheckURLRequireHTTPS(t *testing.T) {
	t.Parallel()
	o := CheckOptions{Resolver: testResolver, RequireHTTPS: true}
	if err := CheckURL(context.Background(), "http://hooks.example.com/", o); !errors.Is(err, ErrInvalidURL) {
		t.Errorf("CheckURL(http, RequireHTTPS) = %v; want ErrInvalidURL", err)
	}
	if err := CheckURL(context.Background(), "https://hooks.example.com/", o); err != nil {
		t.Errorf("CheckURL(https, RequireHTTPS) = %v; want nil", err)
	}
}

// The allow-private switch is the dialer's allow-list: what it lets the
// dialer reach, it lets registration name, and nothing more.
func TestCheckURLAllowList(t *testing.T) {
	t.Parallel()
	o := CheckOptions{Resolver: testResolver, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	for _, u := range []string{"http://127.0.0.1:8080/", "http://2130706433/", "http://127.1/", "http://localhost./", "http://[::ffff:127.0.0.1]/"} {
		if err := CheckURL(context.Background(), u, o); err != nil {
			t.Errorf("CheckURL(%q, allow 127.0.0.0/8) = %v; want nil", u, err)
		}
	}
	for _, u := range []string{"http://10.1/", "http://169.254.169.254/", "https://internal.example.com/", "http://[::1]/"} {
		if err := CheckURL(context.Background(), u, o); !errors.Is(err, ErrBlockedAddress) {
			t.Errorf("CheckURL(%q, allow 127.0.0.0/8) = %v; want ErrBlockedAddress", u, err)
		}
	}
}

// Whatever CheckURL lets through as a literal, the dialer would reach at
// the same address; what it refuses, the dialer refuses too.
func TestCheckURLAgreesWithDialer(t *testing.T) {
	t.Parallel()
	p := NewPolicy(nil)
	for _, host := range []string{"2130706433", "0x7f000001", "0177.0.0.1", "127.1", "10.1", "0xa9.0xfea9fe"} {
		ip, ok := parseIPv4(strings.Split(host, "."))
		if !ok || p.Allowed(ip) {
			t.Errorf("parseIPv4(%q) = %v, %v; want a refused address", host, ip, ok)
		}
		if err := p.control("tcp4", ip.String()+":80", nil); !errors.Is(err, ErrBlockedAddress) {
			t.Errorf("dialer control(%s) = %v; want ErrBlockedAddress", ip, err)
		}
	}
}

var addrOrPort = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|\[?[0-9a-fA-F]*:[0-9a-fA-F:]+\]?|:\d+`)

func TestDescribeNamesNoAddress(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	closedURL := closed.URL
	closed.Close()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name   string
		client *http.Client
		url    string
		want   string
	}{
		{"refused address", NewClient(Options{}), closedURL, FailureAddressNotAllowed},
		{"connection refused", NewClient(Options{Allow: loopback}), closedURL, FailureRefused},
		{"DNS failure", NewClient(Options{}), "http://no-such-host.invalid/hook", FailureDNS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := tt.client.Get(tt.url)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("Get(%s) succeeded; want an error", tt.url)
			}
			got, ok := Describe(err)
			if !ok || !strings.HasPrefix(got, tt.want) {
				t.Errorf("Describe(%v) = %q, %v; want %q", err, got, ok, tt.want)
			}
			if m := addrOrPort.FindString(got); m != "" {
				t.Errorf("Describe(%v) = %q names %q", err, got, m)
			}
		})
	}
	if got, ok := Describe(errors.New("HTTP 500")); ok || got != "" {
		t.Errorf("Describe(not a transport error) = %q, %v; want \"\", false", got, ok)
	}
}
