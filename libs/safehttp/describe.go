package safehttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"syscall"
)

// The fixed vocabulary Describe answers with.
const (
	FailureAddressNotAllowed = "address not allowed"
	FailureDNS               = "DNS lookup failed"
	FailureRefused           = "connection refused"
	FailureReset             = "connection reset"
	FailureUnreachable       = "host unreachable"
	FailureTimeout           = "timed out"
	FailureTLS               = "TLS handshake failed"
	FailureTooLarge          = "response too large"
	FailureConnection        = "connection failed"
)

// Describe turns the error of an outbound request (http.Client.Do, reading
// its body) into a short phrase from a fixed vocabulary that a tenant or
// partner may see: transport errors carry our resolver's address ("lookup x
// on 10.96.0.10:53"), the addresses a name resolved to and the local ports
// we dialled from. ok is false when err is not a transport error at all (an
// HTTP status or parse error the caller made itself), whose own text the
// caller may show. The full error belongs in the service's log only.
func Describe(err error) (phrase string, ok bool) {
	if err == nil {
		return "", false
	}
	var (
		dnsErr  *net.DNSError
		netErr  net.Error
		urlErr  *url.Error
		opErr   *net.OpError
		recErr  tls.RecordHeaderError
		certErr *tls.CertificateVerificationError
		alert   tls.AlertError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, ErrBlockedAddress):
		return FailureAddressNotAllowed, true
	case errors.Is(err, ErrTooLarge):
		return FailureTooLarge, true
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return FailureDNS + " (timed out)", true
		}
		return FailureDNS, true
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return FailureTimeout, true
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailureRefused, true
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return FailureReset, true
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return FailureUnreachable, true
	case errors.As(err, &recErr) || errors.As(err, &certErr) || errors.As(err, &alert) ||
		errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid):
		return FailureTLS, true
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return FailureReset, true
	case errors.As(err, &urlErr) || errors.As(err, &opErr) || errors.As(err, &netErr):
		// Some other failure of the request itself: its text may still
		// name addresses, so it gets the catch-all phrase.
		return FailureConnection, true
	}
	return "", false
}
