package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultMaxTokenSize is the token size cap used when
// VerifyOptions.MaxTokenSize is not set. Access tokens are well under 2 KiB;
// the cap bounds the work an attacker can force before signature checking.
const DefaultMaxTokenSize = 8192

// VerifyOptions configures claim validation. Zero values disable the
// corresponding optional check; RFC 9068 verifiers should set Issuer,
// Audience and Typ.
type VerifyOptions struct {
	// Issuer, when set, must equal the iss claim exactly.
	Issuer string
	// Audience, when set, must be one of the aud claim's values.
	Audience string
	// Typ, when set, must equal the typ header, compared case-insensitively
	// with an optional "application/" prefix (RFC 7515 §4.1.9, RFC 8725 §3.11).
	Typ string
	// Now is the validation time; zero means time.Now().
	Now time.Time
	// Leeway tolerates clock skew for exp, nbf and iat; negative means zero.
	Leeway time.Duration
	// MaxTokenSize caps the token length in bytes; <= 0 means
	// DefaultMaxTokenSize.
	MaxTokenSize int
}

// Header is the decoded protected header of a token.
type Header struct {
	Alg Alg
	Kid string
	Typ string
	Cty string
}

// rawHeader decodes the header. Key-carrying and critical members are
// captured only to reject them: any presence (even null) fails.
type rawHeader struct {
	Alg  Alg             `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Cty  string          `json:"cty"`
	Crit json.RawMessage `json:"crit"`
	Jku  json.RawMessage `json:"jku"`
	Jwk  json.RawMessage `json:"jwk"`
	X5u  json.RawMessage `json:"x5u"`
	X5c  json.RawMessage `json:"x5c"`
}

// ParseUnverifiedHeader decodes and checks the header of token without
// verifying anything else. Its result must not be trusted for authorization;
// it exists so callers can read the kid (e.g. to refresh a JWKS). It applies
// the same structural and header rules as Verify with the default size cap.
func ParseUnverifiedHeader(token string) (Header, error) {
	hSeg, _, _, err := splitToken(token, DefaultMaxTokenSize)
	if err != nil {
		return Header{}, err
	}
	buf := make([]byte, len(hSeg)+b64.DecodedLen(len(hSeg)))
	copy(buf, hSeg)
	return decodeHeader(buf[:len(hSeg)], buf[len(hSeg):])
}

// splitToken checks size, alphabet and structure and returns the three
// segments. Checking the alphabet up front matters: Go's base64 decoder
// silently skips \r and \n, which would otherwise let differently-encoded
// tokens verify.
func splitToken(token string, maxSize int) (h, p, s string, err error) {
	if len(token) > maxSize {
		return "", "", "", fmt.Errorf("%w: token is %d bytes, limit %d", ErrMalformed, len(token), maxSize)
	}
	dot1, dot2 := -1, -1
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.':
			switch {
			case dot1 < 0:
				dot1 = i
			case dot2 < 0:
				dot2 = i
			default:
				return "", "", "", fmt.Errorf("%w: more than 3 segments", ErrMalformed)
			}
		default:
			return "", "", "", fmt.Errorf("%w: invalid character at offset %d", ErrMalformed, i)
		}
	}
	if dot2 < 0 {
		return "", "", "", fmt.Errorf("%w: fewer than 3 segments", ErrMalformed)
	}
	h, p, s = token[:dot1], token[dot1+1:dot2], token[dot2+1:]
	if h == "" || p == "" {
		return "", "", "", fmt.Errorf("%w: empty header or payload", ErrMalformed)
	}
	return h, p, s, nil
}

// decodeHeader base64url-decodes seg into scratch and applies header rules.
func decodeHeader(seg, scratch []byte) (Header, error) {
	n, err := b64.Decode(scratch, seg)
	if err != nil {
		return Header{}, fmt.Errorf("%w: header encoding: %v", ErrMalformed, err)
	}
	var rh rawHeader
	if err := json.Unmarshal(scratch[:n], &rh); err != nil {
		return Header{}, fmt.Errorf("%w: header JSON: %v", ErrMalformed, err)
	}
	switch {
	case rh.Crit != nil:
		return Header{}, fmt.Errorf("%w: crit header not supported", ErrMalformed)
	case rh.Jwk != nil, rh.Jku != nil, rh.X5u != nil, rh.X5c != nil:
		return Header{}, fmt.Errorf("%w: header must not embed or reference keys (jwk/jku/x5u/x5c)", ErrMalformed)
	}
	return Header{Alg: rh.Alg, Kid: rh.Kid, Typ: rh.Typ, Cty: rh.Cty}, nil
}

// Verify checks token's signature against keys and its registered claims
// against opts, then decodes the payload into claims (a pointer, or nil to
// only validate). claims is written before all checks finish, so it must be
// ignored unless Verify returns nil. If claims embeds RegisteredClaims the
// payload is decoded once; otherwise twice.
//
// Every error wraps one of the package's sentinel errors, except misuse such
// as a nil key set or a non-pointer claims argument.
func Verify(token string, keys KeySet, opts VerifyOptions, claims any) error {
	if keys == nil {
		return errors.New("jose: Verify: nil key set")
	}
	maxSize := opts.MaxTokenSize
	if maxSize <= 0 {
		maxSize = DefaultMaxTokenSize
	}
	hSeg, pSeg, sSeg, err := splitToken(token, maxSize)
	if err != nil {
		return err
	}

	// One pooled buffer holds the signing input (hashed/verified as bytes)
	// and the decoded segments, so verification allocates almost nothing
	// beyond JSON decoding.
	inLen := len(hSeg) + 1 + len(pSeg)
	hMax, pMax := b64.DecodedLen(len(hSeg)), b64.DecodedLen(len(pSeg))
	sMax := b64.DecodedLen(len(sSeg))
	bp := getBuf(inLen + len(sSeg) + hMax + pMax + sMax)
	defer putBuf(bp)
	buf := *bp
	input := buf[:inLen]
	copy(input, token[:inLen])
	sigSrc := buf[inLen : inLen+len(sSeg)]
	copy(sigSrc, sSeg)
	rest := buf[inLen+len(sSeg):]
	hBuf, pBuf, sBuf := rest[:hMax], rest[hMax:hMax+pMax], rest[hMax+pMax:]

	hdr, err := decodeHeader(input[:len(hSeg)], hBuf)
	if err != nil {
		return err
	}
	// Reject unsupported algs (none, HS*) before the key lookup so such
	// tokens can never trigger a JWKS refresh.
	if !hdr.Alg.supported() {
		return fmt.Errorf("%w: alg %q", ErrAlgorithm, hdr.Alg)
	}
	if hdr.Kid == "" {
		return fmt.Errorf("%w: missing kid", ErrMalformed)
	}
	if opts.Typ != "" && !typMatches(hdr.Typ, opts.Typ) {
		return fmt.Errorf("%w: typ %q, want %q", ErrTyp, hdr.Typ, opts.Typ)
	}
	key, ok := keys.Key(hdr.Kid)
	if !ok || key == nil {
		return fmt.Errorf("%w: kid %q", ErrUnknownKey, hdr.Kid)
	}
	if key.Alg != hdr.Alg {
		return fmt.Errorf("%w: header alg %q but key %q is %q", ErrAlgorithm, hdr.Alg, hdr.Kid, key.Alg)
	}
	// Re-check the key itself: KeySet is an interface and a custom
	// implementation may hand us a key that does not suit its Alg.
	if err := checkKeyAlg(key.Public, key.Alg); err != nil {
		return fmt.Errorf("key %q: %w", hdr.Kid, err)
	}

	sn, err := b64.Decode(sBuf, sigSrc)
	if err != nil {
		return fmt.Errorf("%w: signature encoding: %v", ErrMalformed, err)
	}
	if err := verifySignature(key, input, sBuf[:sn]); err != nil {
		return err
	}

	pn, err := b64.Decode(pBuf, input[len(hSeg)+1:])
	if err != nil {
		return fmt.Errorf("%w: payload encoding: %v", ErrMalformed, err)
	}
	payload := pBuf[:pn]
	var rc *RegisteredClaims
	if claims != nil {
		if err := json.Unmarshal(payload, claims); err != nil {
			var iue *json.InvalidUnmarshalError
			if errors.As(err, &iue) {
				return fmt.Errorf("jose: Verify: %w", err)
			}
			return fmt.Errorf("%w: claims JSON: %v", ErrMalformed, err)
		}
		if r, ok := claims.(registeredClaimer); ok {
			rc = r.Registered() // nil if embedded via a nil pointer
		}
	}
	if rc == nil {
		rc = new(RegisteredClaims)
		if err := json.Unmarshal(payload, rc); err != nil {
			return fmt.Errorf("%w: registered claims JSON: %v", ErrMalformed, err)
		}
	}
	return validateClaims(rc, opts)
}

// verifySignature checks sig over input with key, enforcing the exact raw
// signature size for the algorithm.
func verifySignature(key *VerificationKey, input, sig []byte) error {
	switch key.Alg {
	case ES256:
		pub := key.Public.(*ecdsa.PublicKey) // checked by checkKeyAlg
		if len(sig) != 64 {
			return fmt.Errorf("%w: ES256 signature is %d bytes, want 64 (R||S)", ErrSignature, len(sig))
		}
		digest := sha256.Sum256(input)
		var der [72]byte
		if !ecdsa.VerifyASN1(pub, digest[:], rsToDER(der[:0], sig[:32], sig[32:])) {
			return fmt.Errorf("%w: ES256", ErrSignature)
		}
	case EdDSA:
		pub := key.Public.(ed25519.PublicKey)
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, input, sig) {
			return fmt.Errorf("%w: EdDSA", ErrSignature)
		}
	case RS256:
		pub := key.Public.(*rsa.PublicKey)
		if len(sig) != pub.Size() {
			return fmt.Errorf("%w: RS256 signature is %d bytes, want %d", ErrSignature, len(sig), pub.Size())
		}
		digest := sha256.Sum256(input)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			return fmt.Errorf("%w: RS256", ErrSignature)
		}
	default:
		return fmt.Errorf("%w: %q", ErrAlgorithm, key.Alg)
	}
	return nil
}

// rsToDER appends the ASN.1 DER SEQUENCE{INTEGER r, INTEGER s} for 32-byte
// big-endian r and s. Building it directly avoids the big.Int allocations of
// ecdsa.Verify; VerifyASN1 then range-checks r and s (zero is rejected).
// With 32-byte inputs the result is at most 72 bytes and every length fits
// DER's short form.
func rsToDER(dst, r, s []byte) []byte {
	dst = append(dst, 0x30, 0)
	dst = appendDERInt(dst, r)
	dst = appendDERInt(dst, s)
	dst[1] = byte(len(dst) - 2)
	return dst
}

// appendDERInt appends the DER INTEGER for an unsigned big-endian value:
// minimal length, with a 0x00 prefix when needed to keep it positive.
func appendDERInt(dst, v []byte) []byte {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	pad := len(v) == 0 || v[0]&0x80 != 0
	l := len(v)
	if pad {
		l++
	}
	dst = append(dst, 0x02, byte(l))
	if pad {
		dst = append(dst, 0)
	}
	return append(dst, v...)
}

// validateClaims applies the time, issuer and audience rules. Comparisons
// are done in whole seconds on int64 so extreme claim values cannot overflow
// time arithmetic.
func validateClaims(rc *RegisteredClaims, opts VerifyOptions) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	leeway := max(opts.Leeway, 0)
	if rc.ExpiresAt == 0 {
		return ErrMissingExp
	}
	// Valid while now < exp (RFC 7519 §4.1.4), widened by the leeway.
	if earliest := now.Add(-leeway).Unix(); rc.ExpiresAt <= earliest {
		return fmt.Errorf("%w: exp %d", ErrExpired, rc.ExpiresAt)
	}
	latest := now.Add(leeway).Unix()
	if rc.NotBefore > latest {
		return fmt.Errorf("%w: nbf %d", ErrNotYetValid, rc.NotBefore)
	}
	if rc.IssuedAt > latest {
		return fmt.Errorf("%w: iat %d in the future", ErrNotYetValid, rc.IssuedAt)
	}
	if opts.Issuer != "" && rc.Issuer != opts.Issuer {
		return fmt.Errorf("%w: %q", ErrIssuer, rc.Issuer)
	}
	if opts.Audience != "" && !rc.Audience.Contains(opts.Audience) {
		return fmt.Errorf("%w: %q does not contain %q", ErrAudience, []string(rc.Audience), opts.Audience)
	}
	return nil
}

// typMatches compares typ values as RFC 7515 §4.1.9 prescribes: media types
// are case-insensitive and "application/" may be omitted.
func typMatches(got, want string) bool {
	return strings.EqualFold(trimApplication(got), trimApplication(want))
}

func trimApplication(s string) string {
	const prefix = "application/"
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):]
	}
	return s
}
