package jose

import "errors"

// Sentinel errors returned (wrapped with detail) by this package. Callers
// should test with errors.Is; the wrapped message is for logs only and may
// change.
var (
	// ErrMalformed reports a token or key that is not well-formed: wrong
	// segment count, bad base64url, bad JSON, oversized, forbidden header.
	ErrMalformed = errors.New("jose: malformed")
	// ErrUnknownKey reports that the token's kid is not in the key set. It is
	// the one error for which refreshing a remote JWKS may help.
	ErrUnknownKey = errors.New("jose: unknown key")
	// ErrAlgorithm reports an unsupported alg or an alg that does not match
	// the key (alg:none, HS256, key-type confusion).
	ErrAlgorithm = errors.New("jose: algorithm not allowed")
	// ErrSignature reports a signature that does not verify.
	ErrSignature = errors.New("jose: invalid signature")
	// ErrExpired reports that exp is not after the current time (minus leeway).
	ErrExpired = errors.New("jose: token expired")
	// ErrNotYetValid reports nbf or iat in the future (beyond leeway).
	ErrNotYetValid = errors.New("jose: token not yet valid")
	// ErrIssuer reports an iss claim different from the expected issuer.
	ErrIssuer = errors.New("jose: invalid issuer")
	// ErrAudience reports an aud claim that does not contain the expected
	// audience.
	ErrAudience = errors.New("jose: invalid audience")
	// ErrTyp reports a typ header different from the required one.
	ErrTyp = errors.New("jose: invalid typ")
	// ErrMissingExp reports a token without an exp claim.
	ErrMissingExp = errors.New("jose: missing exp")
)
