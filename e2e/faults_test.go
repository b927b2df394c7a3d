package e2e

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// The fault suite (issue 13; docs/operations.md, "The fault suite"): the
// production wiring on a three-server NATS cluster, two replicas of each
// service, faults injected under a paced token load, and exact counts
// afterwards. Run it with `go test -count=1 -run TestFault ./e2e/...`.

// natsFailover is the documented bound on how long a token request may keep
// failing while one NATS server of three is killed (docs/operations.md).
// Token issuance publishes through the outbox, and every client reconnects
// to another server within its reconnect wait (250 ms), so requests are
// not expected to fail at all; the bound leaves room for a JetStream
// leader election (a few seconds) should a request ever wait on one.
const natsFailover = 5 * time.Second

// settleWithin bounds every wait for the event pipeline to catch up.
const settleWithin = 90 * time.Second

// countsOf reads the analytics token count and the audit log's
// token.issued records through the gateway.
func countsOf(hc *http.Client, base, admin string) (count, audit int, err error) {
	if count, err = analyticsTokens(hc, base, admin); err != nil {
		return 0, 0, err
	}
	var page struct {
		Total int `json:"total"`
	}
	if err = getJSON(hc, base, "/api/v1/audit?action=token.issued&limit=1", admin, &page); err != nil {
		return 0, 0, err
	}
	return count, page.Total, nil
}

// requireCounted waits (at most settleWithin) until the analytics consumer
// has nothing pending and analytics and the audit log count want tokens,
// then requires exactly want of each — no event lost, none counted twice —
// and nothing in analytics' dead letter. extra, when not nil, is part of
// the condition (another consumer's state).
func (fs *faultStack) requireCounted(admin string, want int, extra func() (bool, string)) {
	fs.t.Helper()
	hc := apiClient(2)
	var (
		count, audit int
		drained      bool
		extraOK      = true
		extraWhy     string
		lastErr      error
	)
	ctx, cancel := context.WithTimeout(context.Background(), settleWithin)
	defer cancel()
	began := time.Now()
	settled := poll(ctx, 250*time.Millisecond, func() bool {
		if drained, lastErr = fs.nats.consumerDrained("analytics"); lastErr != nil || !drained {
			return false
		}
		if count, audit, lastErr = countsOf(hc, fs.gateway, admin); lastErr != nil {
			return false
		}
		if extra != nil {
			extraOK, extraWhy = extra()
		}
		return count == want && audit == want && extraOK
	})
	fs.t.Logf("after %v: analytics counted %d tokens, audit holds %d token.issued records; want %d",
		time.Since(began).Round(time.Millisecond), count, audit, want)
	if !settled {
		fs.t.Errorf("pipeline did not settle within %v (consumer drained %v, last error %v, %s)", settleWithin, drained, lastErr, extraWhy)
	}
	if count != want {
		fs.t.Errorf("Got(analytics token count) = %d; want %d (tokens issued)", count, want)
	}
	if audit != want {
		fs.t.Errorf("Got(audit records with action token.issued) = %d; want %d", audit, want)
	}
	fs.requireNoDeadLetters("analytics")
}

// requireNoDeadLetters requires an empty dead letter for consumer.
func (fs *faultStack) requireNoDeadLetters(consumer string) {
	fs.t.Helper()
	n, err := fs.nats.deadLettered(consumer)
	if err != nil {
		fs.t.Fatalf("read dead letters of %s: %v", consumer, err)
	}
	if n != 0 {
		fs.t.Errorf("Got(dead-lettered events of %s) = %d; want 0", consumer, n)
	}
}

// TestFaultNATSServerKilledUnderLoad kills (SIGKILL) the nats-server that
// leads the event stream, one of three, while 300 tokens are issued
// through the gateways at 30/s, and requires: every token request
// succeeded, none kept failing longer than natsFailover; analytics and the
// audit log count exactly the tokens the token replicas issued (0 lost, 0
// counted twice); nothing dead-lettered. The killed server stays down: two
// of three keep the streams' quorum.
func TestFaultNATSServerKilledUnderLoad(t *testing.T) {
	fs := startFaultStack(t, faultOptions{})
	c := newClient(t, fs.gateway)
	admin, r := c.token(fs.adminID, fs.adminSecret, "analytics:read audit:read")
	c.mustStatus(r, http.StatusOK, "admin token")

	leader := fs.nats.streamLeader(events.StreamName)
	const n, killAt = 300, 100
	killed := make(chan time.Time, 1)
	res := runFaultLoad(t, faultLoad{Base: fs.gateway, ClientID: fs.adminID, Secret: fs.adminSecret,
		N: n, Concurrency: 4, Rate: 30, Retry: true,
		OnIssued: func(k int) {
			if k == killAt {
				go func() {
					fs.nats.kill(leader)
					killed <- time.Now()
				}()
			}
		}})
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream leader was not killed within 30s")
	}
	t.Logf("SIGKILL of %s (the event stream's leader) at token %d; load: %v", fs.nats.nodes[leader].name, killAt, res)

	if res.Issued != n || res.Abandoned != 0 {
		t.Errorf("Got(tokens issued, requests abandoned) = (%d, %d); want (%d, 0)", res.Issued, res.Abandoned, n)
	}
	if res.LongestFailure > natsFailover {
		t.Errorf("a token request kept failing for %v; want at most %v (the documented failover)", res.LongestFailure, natsFailover)
	}
	if newLeader := fs.nats.streamLeader(events.StreamName); newLeader == leader {
		t.Errorf("the event stream is still led by the killed server %s", fs.nats.nodes[leader].name)
	}
	want := fs.tokensIssued()
	if want < 1+n {
		t.Errorf("token replicas issued %d tokens; want at least %d", want, 1+n)
	}
	fs.requireCounted(admin, want, nil)
}

// TestFaultPostgresCutForConsumers cuts the PostgreSQL path of both
// analytics replicas and both webhook replicas (the suite's TCP proxy
// closes their connections and refuses new ones) for 60 s while 700 tokens
// are issued at 10/s, then restores it, and requires: analytics and the
// audit log count exactly the tokens issued; the webhook receiver got the
// event of every load token and the webhook service recorded one delivery
// per event; nothing dead-lettered by either consumer.
func TestFaultPostgresCutForConsumers(t *testing.T) {
	fs := startFaultStack(t, faultOptions{
		Replicas:  map[string]int{"webhook": 2},
		DBProxied: []string{"analytics", "webhook"},
		Extra: map[string][]string{
			"webhook": {"WEBHOOK_TIMEOUT=2s", "WEBHOOK_POLL_INTERVAL=200ms"},
		},
	})
	c := newClient(t, fs.gateway)
	admin, r := c.token(fs.adminID, fs.adminSecret, "analytics:read audit:read webhooks:read webhooks:write")
	c.mustStatus(r, http.StatusOK, "admin token")
	rcv := newSWReceiver(t)
	hookID := registerWebhook(t, c, admin, rcv)

	const n, cutAt, cutFor = 700, 50, 60 * time.Second
	cutDone := make(chan struct{})
	var refusedDuringCut int64
	res := runFaultLoad(t, faultLoad{Base: fs.gateway, ClientID: fs.adminID, Secret: fs.adminSecret,
		N: n, Concurrency: 4, Rate: 10, Retry: true,
		OnIssued: func(k int) {
			if k != cutAt {
				return
			}
			go func() {
				defer close(cutDone)
				before := fs.dbProxy["analytics"].Refused() + fs.dbProxy["webhook"].Refused()
				fs.dbProxy["analytics"].Cut()
				fs.dbProxy["webhook"].Cut()
				time.Sleep(cutFor) // the fault's duration, not a wait for a condition
				refusedDuringCut = fs.dbProxy["analytics"].Refused() + fs.dbProxy["webhook"].Refused() - before
				fs.dbProxy["analytics"].Restore()
				fs.dbProxy["webhook"].Restore()
			}()
		}})
	select {
	case <-cutDone:
	case <-time.After(cutFor + 30*time.Second):
		t.Fatal("the PostgreSQL cut did not end")
	}
	t.Logf("PostgreSQL cut for analytics and webhook at token %d for %v (%d connection attempts refused); load: %v", cutAt, cutFor, refusedDuringCut, res)
	if refusedDuringCut == 0 {
		t.Errorf("no connection to PostgreSQL was refused during the cut: the cut cut nothing")
	}
	if res.Issued != n || res.Abandoned != 0 {
		t.Errorf("Got(tokens issued, requests abandoned) = (%d, %d); want (%d, 0)", res.Issued, res.Abandoned, n)
	}

	want := fs.tokensIssued()
	hc := apiClient(2)
	var got receiverStats
	var missing, deliveries int
	fs.requireCounted(admin, want, func() (bool, string) {
		var page struct {
			Total int `json:"total"`
		}
		if err := getJSON(hc, fs.gateway, "/api/v1/webhooks/"+hookID+"/deliveries?limit=1", admin, &page); err != nil {
			return false, err.Error()
		}
		deliveries = page.Total
		got = rcv.stats()
		missing = 0
		for _, jti := range res.JTIs {
			if _, ok := got.JTIs[jti]; !ok {
				missing++
			}
		}
		return missing == 0 && deliveries == got.Distinct, ""
	})
	t.Logf("receiver: %d requests for %d distinct events (%d duplicates, at-least-once); %d deliveries recorded",
		got.Requests, got.Distinct, got.Requests-got.Distinct, deliveries)
	if missing != 0 {
		t.Errorf("receiver never saw the token.issued event of %d of %d load tokens", missing, len(res.JTIs))
	}
	// Only the admin token, issued just before the webhook existed, may be
	// delivered on top of the load's tokens.
	if got.Distinct < len(res.JTIs) || got.Distinct > len(res.JTIs)+1 {
		t.Errorf("receiver saw %d distinct events; want %d (or %d with the admin token)", got.Distinct, len(res.JTIs), len(res.JTIs)+1)
	}
	if deliveries != got.Distinct {
		t.Errorf("webhook service recorded %d deliveries; want %d (one per event)", deliveries, got.Distinct)
	}
	if got.BadSignatures > 0 || got.Mismatched > 0 {
		t.Errorf("receiver: %d bad signatures, %d webhook-id/body mismatches: %v", got.BadSignatures, got.Mismatched, got.Errors)
	}
	fs.requireNoDeadLetters("webhook")
}

// preStop stands for the chart's preStopSleepSeconds (5 s by default),
// shortened: on loopback the load balancer drops a replica at once.
const preStop = 300 * time.Millisecond

// tokenLatency is added to every answer of the token service in the
// SIGTERM scenario; being longer than preStop, it keeps token requests in
// flight at a gateway when that gateway receives SIGTERM, so its drain is
// what the scenario tests.
const tokenLatency = 800 * time.Millisecond

// TestFaultSIGTERMEveryService restarts every replica of every service in
// turn (analytics, tier, token, then the gateways) under a token load at
// 25/s whose client retries nothing and opens a connection per request,
// each answer of the token service held tokenLatency by its load balancer:
// each replica is first taken out of its load balancer and keeps serving
// for preStop (as Kubernetes and the chart's preStop sleep do), then is
// sent SIGTERM, must exit 0, and is started
// again and put back. It requires: not one request failed; analytics and
// the audit log count exactly the tokens answered (plus the admin's);
// every stream and KV bucket still has three replicas.
func TestFaultSIGTERMEveryService(t *testing.T) {
	fs := startFaultStack(t, faultOptions{})
	c := newClient(t, fs.gateway)
	admin, r := c.token(fs.adminID, fs.adminSecret, "analytics:read audit:read")
	c.mustStatus(r, http.StatusOK, "admin token")
	fs.lb["token"].SetLatency(tokenLatency)

	rolled := make(chan struct{})
	var restarts int
	go func() {
		defer close(rolled)
		for _, name := range []string{"analytics", "tier", "token", "gateway"} {
			for _, sv := range fs.svcs[name] {
				fs.lb[name].Remove(sv.http)
				// The chart's preStop sleep (preStopSleepSeconds): the
				// replica keeps serving while the load balancers drop it,
				// so that no connection dialled just before the removal
				// reaches a closed listener. Part of the fault's script,
				// not a wait for a condition.
				time.Sleep(preStop)
				if err := sv.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Errorf("SIGTERM %s: %v", sv.name, err)
					return
				}
				select {
				case <-sv.p.done:
				case <-time.After(30 * time.Second):
					t.Errorf("%s did not exit 30s after SIGTERM", sv.name)
					return
				}
				if code := sv.p.cmd.ProcessState.ExitCode(); code != 0 {
					t.Errorf("%s exited %d after SIGTERM; want 0", sv.name, code)
				}
				fs.start(sv)
				fs.lb[name].Add(sv.http)
				restarts++
			}
		}
	}()
	res := runFaultLoad(t, faultLoad{Base: fs.gateway, ClientID: fs.adminID, Secret: fs.adminSecret,
		N: 5000, Concurrency: 32, Rate: 25, NoKeepAlive: true, Stop: rolled})
	t.Logf("%d replicas restarted with SIGTERM; load: %v", restarts, res)
	if restarts != 8 {
		t.Fatalf("restarted %d replicas; want 8", restarts)
	}
	if res.FailedAttempts != 0 || res.Abandoned != 0 {
		t.Errorf("Got(failed requests) = %d; want 0 (first errors: %q)", res.FailedAttempts, res.Errors)
	}
	fs.requireCounted(admin, 1+res.Issued, nil)
	// Every replica started again after the others: none may have shrunk
	// a bucket or stream another service created with three replicas.
	fs.nats.requireReplicated()
}
