package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultLoad is a paced token load through the gateway that measures what
// a fault costs its clients.
type faultLoad struct {
	Base, ClientID, Secret string
	N, Concurrency         int
	Rate                   float64 // tokens per second
	// Retry retries a failed attempt (for up to 30 s, every 50 ms); without
	// it a failed request is counted and abandoned.
	Retry bool
	// NoKeepAlive opens a connection per request, so that each request is
	// routed anew by the gateway's load balancer.
	NoKeepAlive bool
	// OnIssued runs after each token, with the number issued so far.
	OnIssued func(issued int)
	// Stop, when not nil, ends the load once closed (N is then a cap).
	Stop <-chan struct{}
}

// faultLoadResult is what the load saw.
type faultLoadResult struct {
	Issued         int      // requests answered 200 with a token
	JTIs           []string // their tokens' ids
	Abandoned      int      // requests that never got a token
	FailedAttempts int      // attempts answered with an error or non-200
	Errors         []string // the first few
	// LongestFailure is the longest time one request kept failing, from
	// its first failed attempt until the answer that succeeded (or was
	// abandoned).
	LongestFailure time.Duration
	Elapsed        time.Duration
}

func runFaultLoad(t *testing.T, o faultLoad) faultLoadResult {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: o.Concurrency * 2, IdleConnTimeout: 30 * time.Second, DisableKeepAlives: o.NoKeepAlive}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"agents:read"}}.Encode()
	once := func() (string, error) {
		req, _ := http.NewRequest(http.MethodPost, o.Base+"/oauth2/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.Secret))
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("HTTP %d %s", resp.StatusCode, tail(string(b), 200))
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(b, &tok); err != nil {
			return "", fmt.Errorf("token answer: %w", err)
		}
		return jwtID(tok.AccessToken)
	}
	var (
		next, issued atomic.Int64
		mu           sync.Mutex
		res          faultLoadResult
		wg           sync.WaitGroup
		started      = time.Now()
		stopped      = o.Stop
	)
	if stopped == nil {
		stopped = make(chan struct{})
	}
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.FailedAttempts++
		if len(res.Errors) < 5 {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.N) {
					return
				}
				select {
				case <-stopped:
					return
				case <-time.After(time.Until(started.Add(time.Duration(float64(i) / o.Rate * float64(time.Second))))):
				}
				var firstFail time.Time
				deadline := time.Now().Add(30 * time.Second)
				ok, jti := false, ""
				for {
					var err error
					if jti, err = once(); err == nil {
						ok = true
						break
					}
					fail(err)
					if firstFail.IsZero() {
						firstFail = time.Now()
					}
					if !o.Retry || time.Now().After(deadline) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				mu.Lock()
				if !firstFail.IsZero() {
					res.LongestFailure = max(res.LongestFailure, time.Since(firstFail))
				}
				if ok {
					res.Issued++
					res.JTIs = append(res.JTIs, jti)
				} else {
					res.Abandoned++
				}
				mu.Unlock()
				if ok && o.OnIssued != nil {
					o.OnIssued(int(issued.Add(1)))
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(started)
	return res
}

// String summarises the load for the test log.
func (r faultLoadResult) String() string {
	return fmt.Sprintf("%d tokens issued, %d requests abandoned, %d failed attempts, longest failing request %v, in %v%s",
		r.Issued, r.Abandoned, r.FailedAttempts, r.LongestFailure.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond), firstErrors(r.Errors))
}
