// Package jose implements the small subset of JOSE (JWS compact serialization,
// JWK, JWKS and JWT claim validation) that AgentIdP needs to issue and verify
// access tokens, using only the Go standard library.
//
// Security choices, each made to close a well-known class of JWT bug:
//
//   - The algorithm is pinned by the key, never chosen by the token. A
//     verification key carries exactly one Alg and Verify rejects any token
//     whose header alg differs from it. "none" and every HMAC alg are never
//     valid, so alg:none and "HS256 signed with the RSA public key" (key-type
//     confusion) attacks cannot succeed, whatever key material the attacker
//     feeds in.
//   - Only ES256 (P-256), EdDSA (Ed25519) and RS256 (>= 2048-bit modulus) are
//     supported. ES256 signatures must be the 64-byte R||S form of RFC 7518;
//     ASN.1/DER signatures are rejected so a signature has one encoding.
//   - Keys are only ever taken from the caller's KeySet. Headers that embed or
//     point at keys (jwk, jku, x5u, x5c) are rejected rather than ignored, and
//     so is crit, because we implement no extensions and RFC 7515 requires
//     rejecting tokens with unknown critical extensions.
//   - Parsing is strict: exactly three segments, unpadded base64url with
//     canonical trailing bits, no whitespace, and a size cap applied before
//     any decoding so oversized input costs almost nothing.
//   - exp is required: a token without an expiry would be valid forever, which
//     is never what an access token should be. nbf and iat in the future (beyond
//     the leeway) are rejected. iss, aud and typ are checked when the caller
//     configures them; RFC 9068 access-token verifiers should set all three.
//
// Every failure wraps one of the sentinel errors (ErrMalformed, ErrAlgorithm,
// ...) so callers can map reasons to responses with errors.Is without parsing
// messages.
package jose
