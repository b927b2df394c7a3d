package e2e

import (
	"context"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// The event benchmarks measure the asynchronous side of the suite on the
// production wiring (separate binaries, PostgreSQL, Redis, nats-server).
// They load the whole machine for about a minute, so they only run with
// AGENTIDP_BENCH=1:
//
//	AGENTIDP_BENCH=1 go test -run Bench -v ./e2e/
//
// They report figures (t.Log) and assert only correctness (exact counts),
// never timings.

func requireBench(t *testing.T) {
	t.Helper()
	if os.Getenv("AGENTIDP_BENCH") != "1" {
		t.Skip("event benchmark: loads the machine for ~30 s; run with AGENTIDP_BENCH=1 go test -run Bench -v ./e2e/")
	}
}

// TestBenchEventToAnalytics issues tokens at 1,000/s for 10 s through the
// gateway while polling the analytics count every 20 ms, and reports the
// distribution of (first poll answer whose count covers token i) − (time
// token i's 200 answer arrived), tokens ranked by arrival. The final count
// must equal the tokens the token service issued.
func TestBenchEventToAnalytics(t *testing.T) {
	requireBench(t)
	const rate, seconds, concurrency = 1000.0, 10, 32
	s := startEventStack(t, nil)
	c := newClient(t, s.gateway)
	admin, r := c.token(s.adminID, s.adminSecret, "analytics:read")
	c.mustStatus(r, http.StatusOK, "admin token")
	hc := apiClient(2)

	// Baseline: the count covers every token issued so far.
	var base int
	eventually(t, 30*time.Second, func() bool {
		n, err := analyticsTokens(hc, s.gateway, admin)
		base = n
		return err == nil && n == s.tokensIssued()
	}, func() string { return "analytics never caught up with the setup tokens" })

	type sample struct {
		at    time.Time
		count int
	}
	var (
		mu      sync.Mutex
		samples []sample
		pollErr int
	)
	ctx, cancel := context.WithCancel(context.Background())
	pollerDone := make(chan struct{})
	go func() {
		defer close(pollerDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			n, err := analyticsTokens(hc, s.gateway, admin)
			mu.Lock()
			if err != nil {
				pollErr++
			} else {
				samples = append(samples, sample{at: time.Now(), count: n - base})
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()

	n := int(rate) * seconds
	res := issueTokens(t, loadOptions{Base: s.gateway, ClientID: s.adminID, Secret: s.adminSecret, N: n, Concurrency: concurrency, Rate: rate})
	want := s.tokensIssued() - base
	waitCtx, waitCancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer waitCancel()
	poll(waitCtx, 20*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(samples) > 0 && samples[len(samples)-1].count >= want
	})
	cancel()
	<-pollerDone

	final, err := analyticsTokens(hc, s.gateway, admin)
	if err != nil {
		t.Fatal(err)
	}
	if final-base != want || len(res.Tokens) != n {
		t.Fatalf("analytics counted %d tokens; want %d (token service), %d issued by the test", final-base, want, len(res.Tokens))
	}
	tokens := slices.Clone(res.Tokens)
	slices.SortFunc(tokens, func(a, b issuedToken) int { return a.At.Compare(b.At) })
	lags := make([]time.Duration, 0, len(tokens))
	j := 0
	for k, tok := range tokens {
		for j < len(samples) && samples[j].count < k+1 {
			j++
		}
		if j == len(samples) {
			t.Fatalf("no poll covered token %d", k+1)
		}
		lags = append(lags, max(0, samples[j].at.Sub(tok.At)))
	}
	slices.Sort(lags)
	t.Logf("event → analytics count: %d tokens at %.0f/s offered, %.0f/s achieved (%d failed attempts), %d polls (%d failed): p50 %v, p90 %v, p99 %v, max %v; final count %d = issued",
		len(tokens), rate, float64(len(tokens))/res.Elapsed.Seconds(), res.Failures, len(samples), pollErr,
		percentile(lags, 50).Round(time.Millisecond), percentile(lags, 90).Round(time.Millisecond),
		percentile(lags, 99).Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond), final-base)
}

// TestBenchWebhookDelivery issues tokens at 500/s for 10 s with a webhook
// subscribed to token.issued (default delivery settings: 64 workers, 16 in
// flight per endpoint) and reports, per event, the time from the event's
// commit (its envelope time, set when the token service issues the token)
// to the first delivery attempt at the receiver, and the delivery
// throughput. Every event must arrive with a valid signature.
func TestBenchWebhookDelivery(t *testing.T) {
	requireBench(t)
	const rate, seconds, concurrency = 500.0, 10, 16
	s := startEventStack(t, nil)
	c := newClient(t, s.gateway)
	admin, r := c.token(s.adminID, s.adminSecret, "webhooks:read webhooks:write")
	c.mustStatus(r, http.StatusOK, "admin token")
	rcv := newSWReceiver(t)
	registerWebhook(t, c, admin, rcv)

	n := int(rate) * seconds
	res := issueTokens(t, loadOptions{Base: s.gateway, ClientID: s.adminID, Secret: s.adminSecret, N: n, Concurrency: concurrency, Rate: rate})
	var got receiverStats
	covered := func() bool {
		got = rcv.stats()
		for _, tok := range res.Tokens {
			if _, ok := got.JTIs[tok.JTI]; !ok {
				return false
			}
		}
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if !poll(ctx, 50*time.Millisecond, covered) {
		t.Fatalf("after 120s the receiver had %d of %d events", got.Distinct, len(res.Tokens))
	}
	if got.BadSignatures > 0 || got.Mismatched > 0 {
		t.Fatalf("receiver: %d bad signatures, %d mismatches: %v", got.BadSignatures, got.Mismatched, got.Errors)
	}
	// Only the load's events: the admin token's event may precede the webhook.
	loadIDs := map[string]bool{}
	for _, tok := range res.Tokens {
		loadIDs[got.JTIs[tok.JTI]] = true
	}
	lags := make([]time.Duration, 0, len(res.Tokens))
	var first, last time.Time
	rcv.mu.Lock()
	for id := range loadIDs {
		seen := rcv.firstSeen[id]
		lags = append(lags, seen.Sub(rcv.eventTime[id]))
		if first.IsZero() || seen.Before(first) {
			first = seen
		}
		if seen.After(last) {
			last = seen
		}
	}
	rcv.mu.Unlock()
	slices.Sort(lags)
	t.Logf("webhook delivery: %d events at %.0f/s offered, %.0f/s issued (%d failed attempts); first attempts %v apart = %.0f deliveries/s; %d requests (%d duplicates); commit → first attempt p50 %v, p90 %v, p99 %v, max %v",
		len(lags), rate, float64(len(res.Tokens))/res.Elapsed.Seconds(), res.Failures,
		last.Sub(first).Round(time.Millisecond), float64(len(lags)-1)/last.Sub(first).Seconds(), got.Requests, got.Requests-got.Distinct,
		percentile(lags, 50).Round(time.Millisecond), percentile(lags, 90).Round(time.Millisecond),
		percentile(lags, 99).Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
}
