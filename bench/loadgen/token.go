package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// TokenRequest describes an OAuth2 client-credentials token request
// (RFC 6749 section 4.4).
type TokenRequest struct {
	// URL is the token endpoint, e.g. http://127.0.0.1:8080/oauth2/token.
	URL string
	// ClientID and ClientSecret are sent with HTTP basic authentication,
	// each form-urlencoded first as RFC 6749 section 2.3.1 requires.
	ClientID     string
	ClientSecret string
	// Scope is optional; when non-empty it is sent as the scope parameter.
	Scope string
}

// tokenResponse is the subset of the RFC 6749 section 5.1 response we use.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
}

// maxTokenBody bounds how much of a token response is read.
const maxTokenBody = 1 << 20

// FetchToken performs a client-credentials grant against tr.URL and returns
// the access token. It fails on a non-200 status, on a token_type other than
// Bearer (when present) and on an empty access_token.
func FetchToken(ctx context.Context, client *http.Client, tr TokenRequest) (string, error) {
	if tr.URL == "" || tr.ClientID == "" {
		return "", fmt.Errorf("fetch token: token URL and client ID are required")
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if tr.Scope != "" {
		form.Set("scope", tr.Scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tr.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("fetch token: build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(tr.ClientID), url.QueryEscape(tr.ClientSecret))

	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch token from %s: %w", tr.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return "", fmt.Errorf("fetch token: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetch token from %s: status %d: %s", tr.URL, resp.StatusCode, snippet(body))
	}
	var tok tokenResponse
	if err := json.Unmarshal(body, &tok); err != nil {
		return "", fmt.Errorf("fetch token: decode response: %w", err)
	}
	if tok.AccessToken == "" {
		return "", fmt.Errorf("fetch token: response has no access_token")
	}
	if tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer") {
		return "", fmt.Errorf("fetch token: unsupported token_type %q", tok.TokenType)
	}
	return tok.AccessToken, nil
}

// snippet returns a short single-line excerpt of a response body for errors.
func snippet(b []byte) string {
	const maxLen = 200
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return s
}

// maxTokenLine bounds the length of one line of a token file.
const maxTokenLine = 64 << 10

// ReadTokenFile reads access tokens, one per line, from path. Surrounding
// whitespace (including a CR of CRLF line ends) is trimmed and blank lines
// are skipped. It fails when the file cannot be read, when a line holds
// something that cannot be a Bearer token (inner whitespace, control
// characters) and when the file holds no token at all.
func ReadTokenFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	defer func() { _ = f.Close() }()
	var tokens []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxTokenLine)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" {
			continue
		}
		if err := checkToken(t); err != nil {
			return nil, fmt.Errorf("read token file %s: line %d: %w", path, line, err)
		}
		tokens = append(tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read token file %s: line %d: %w", path, line+1, err)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("read token file %s: no tokens (want one access token per line)", path)
	}
	return tokens, nil
}
