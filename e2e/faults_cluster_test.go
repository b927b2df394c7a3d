package e2e

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file is the fault suite's harness (issue 13): a three-server
// nats-server cluster as separate processes, and the production wiring on
// it with two replicas of each service behind the suite's own TCP proxies
// (faults_proxy_test.go), over the real PostgreSQL and Redis. The
// scenarios are in faults_test.go and faults_more_test.go.

// natsNode is one server of the cluster, on fixed client and route ports
// and its own JetStream store, all kept across restarts.
type natsNode struct {
	name, port, routePort, store string
	runs                         int
	p                            *proc
}

// natsCluster is three nats-server 2.15 processes clustered over loopback
// routes, JetStream on each.
type natsCluster struct {
	t     *testing.T
	bin   string
	nodes []*natsNode
}

// startNATSCluster starts n clustered servers and waits until JetStream
// answers (a meta leader is elected), so that services creating streams
// with NATS_STREAM_REPLICAS=n do not race the election.
func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, bin: natsServerBinary(t)}
	for i := range n {
		_, port, _ := net.SplitHostPort(freeAddr(t))
		_, routePort, _ := net.SplitHostPort(freeAddr(t))
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("nats-%d", i), port: port, routePort: routePort, store: t.TempDir()})
	}
	for i := range c.nodes {
		c.start(i)
	}
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect to the NATS cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastErr error
	if !poll(ctx, 200*time.Millisecond, func() bool {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		defer acancel()
		_, lastErr = js.AccountInfo(actx)
		return lastErr == nil
	}) {
		t.Fatalf("JetStream cluster not ready after 30s: %v", lastErr)
	}
	return c
}

// URLs is the client URL list of every server, as NATS_URL takes it.
func (c *natsCluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = "nats://127.0.0.1:" + n.port
	}
	return strings.Join(urls, ",")
}

// start (re)starts server i on its ports and store.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, "nats://127.0.0.1:"+o.routePort)
		}
	}
	n.runs++
	n.p = start(c.t, fmt.Sprintf("%s#%d", n.name, n.runs), c.bin, nil,
		"-a", "127.0.0.1", "-p", n.port, "-n", n.name, "-js", "-sd", n.store,
		"--cluster_name", "agentidp-faults", "--cluster", "nats://127.0.0.1:"+n.routePort,
		"--routes", strings.Join(routes, ","),
		// Clients know the servers from NATS_URL only: a client whose
		// path to NATS goes through a proxy a scenario cuts must not
		// reconnect around the cut to an advertised address.
		"--no_advertise")
	waitOutput(c.t, n.p, regexp.MustCompile(`Server is ready`))
}

// kill sends SIGKILL to server i and waits until it is gone.
func (c *natsCluster) kill(i int) {
	c.t.Helper()
	p := c.nodes[i].p
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Errorf("kill %s: %v", c.nodes[i].name, err)
	}
	<-p.done
}

// streamLeader returns the index of the server leading stream, asking
// until one answers (at most 30 s): right after a server is killed the
// stream may be between leaders.
func (c *natsCluster) streamLeader(stream string) int {
	c.t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		c.t.Fatalf("connect to the NATS cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		info    *jetstream.StreamInfo
		lastErr error
	)
	if !poll(ctx, 200*time.Millisecond, func() bool {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		defer acancel()
		var s jetstream.Stream
		if s, lastErr = js.Stream(actx, stream); lastErr != nil {
			return false
		}
		if info, lastErr = s.Info(actx); lastErr != nil {
			return false
		}
		return info.Cluster != nil && info.Cluster.Leader != ""
	}) {
		c.t.Fatalf("stream %s has no leader after 30s (last error %v)", stream, lastErr)
	}
	if info.Config.Replicas != len(c.nodes) {
		c.t.Fatalf("stream %s has %d replicas; want %d", stream, info.Config.Replicas, len(c.nodes))
	}
	for i, n := range c.nodes {
		if n.name == info.Cluster.Leader {
			return i
		}
	}
	c.t.Fatalf("stream %s leader %q is none of the cluster's servers", stream, info.Cluster.Leader)
	return -1
}

// deadLettered is the number of messages in the dead-letter stream for
// consumer (subject agentidp_dlq.<consumer>).
func (c *natsCluster) deadLettered(consumer string) (uint64, error) {
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", events.DeadLetterStream, err)
	}
	subject := events.DeadLetterPrefix + "." + consumer
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", events.DeadLetterStream, err)
	}
	return info.State.Subjects[subject], nil
}

// faultOptions shape a fault stack.
type faultOptions struct {
	// Replicas per service (default 2 each of token, tier, analytics and
	// gateway; webhook runs only when given here).
	Replicas map[string]int
	// DBProxied lists the services whose PostgreSQL connections go
	// through a tcpProxy of their own (fs.dbProxy[name]), to cut.
	DBProxied []string
	// Extra environment per service.
	Extra map[string][]string
	// ReplicaExtra is extra environment per replica ("gateway-1"), after
	// Extra (the last value of a variable wins).
	ReplicaExtra map[string][]string
	// NATS is a cluster started beforehand (default: a new one of three),
	// for a scenario that puts its own proxies in front of the servers.
	NATS *natsCluster
}

// faultStack is the production wiring on a NATS cluster: every service's
// replicas behind a round-robin tcpProxy (the gateway's is the public
// address and the issuer), NATS_URL listing every server,
// NATS_STREAM_REPLICAS equal to the cluster's size.
type faultStack struct {
	t           *testing.T
	nats        *natsCluster
	svcs        map[string][]*service
	lb          map[string]*tcpProxy
	dbProxy     map[string]*tcpProxy
	gateway     string // base URL (the gateway's load balancer)
	adminID     string
	adminSecret string
}

// faultServices is the start order: the gateway last, its upstreams first.
var faultServices = []string{"token", "tier", "analytics", "webhook", "gateway"}

func startFaultStack(t *testing.T, o faultOptions) *faultStack {
	t.Helper()
	pgURL := testkit.PostgresURL(t)
	redisURL := testkit.RedisURL(t)
	cluster := o.NATS
	if cluster == nil {
		cluster = startNATSCluster(t, 3)
	}
	bin := binaries(t)
	replicas := map[string]int{"token": 2, "tier": 2, "analytics": 2, "gateway": 2}
	for k, v := range o.Replicas {
		replicas[k] = v
	}
	bins := map[string]string{}
	for _, name := range faultServices {
		bins[name] = bin + "/" + name
	}
	if replicas["webhook"] > 0 {
		bins["webhook"] = webhookBinary(t)
	}

	prefix := "e2e_" + strings.ToLower(testkit.RandomSuffix(6)) + "_"
	t.Cleanup(func() {
		dropSchemas(t, pgURL, prefix)
		dropWebhookSchema(t, pgURL, prefix+"webhook")
	})
	fs := &faultStack{t: t, nats: cluster, svcs: map[string][]*service{}, lb: map[string]*tcpProxy{}, dbProxy: map[string]*tcpProxy{}}
	for _, name := range faultServices {
		if replicas[name] > 0 {
			fs.lb[name] = newTCPProxy(t)
		}
	}
	issuer := "http://" + fs.lb["gateway"].Addr()
	fs.gateway = issuer
	fs.adminID, fs.adminSecret = bootstrapAdmin(t, bin, pgURL, prefix, issuer)

	pg, err := url.Parse(pgURL)
	if err != nil {
		t.Fatalf("PostgreSQL URL: %v", err)
	}
	for _, name := range o.DBProxied {
		fs.dbProxy[name] = newTCPProxy(t, pg.Host)
	}
	db := func(name string) []string {
		u := *pg
		if p, ok := fs.dbProxy[name]; ok {
			u.Host = p.Addr()
		}
		return []string{"DATABASE_URL=" + u.String(), "DATABASE_SCHEMA=" + prefix + name}
	}
	common := []string{"NATS_URL=" + cluster.URLs(), "NATS_STREAM_REPLICAS=3",
		"AGENTIDP_INTERNAL_KEY=" + hexKey(testKey), "LOG_LEVEL=warn"}
	gatewayEnv := []string{"REDIS_URL=" + redisURL, "GATEWAY_ISSUER=" + issuer,
		"TOKEN_SERVICE_URL=http://" + fs.lb["token"].Addr(),
		"TIER_SERVICE_URL=http://" + fs.lb["tier"].Addr(),
		"ANALYTICS_SERVICE_URL=http://" + fs.lb["analytics"].Addr()}
	if lb, ok := fs.lb["webhook"]; ok {
		gatewayEnv = append(gatewayEnv, "WEBHOOK_SERVICE_URL=http://"+lb.Addr())
	}
	own := map[string][]string{
		"token":     append(append(db("token"), "REDIS_URL="+redisURL), tokenServiceEnv(issuer)...),
		"tier":      append(db("tier"), "REDIS_URL="+redisURL),
		"analytics": append(db("analytics"), "REDIS_URL="+redisURL, "ANALYTICS_CHECKPOINT_KEY="+hexKey("checkpoint-key")),
		"webhook":   append(db("webhook"), "WEBHOOK_SECRET_KEY="+hexKey("webhook-secret-key"), "WEBHOOK_ALLOW_PRIVATE=127.0.0.0/8"),
		"gateway":   gatewayEnv,
	}
	for _, name := range faultServices {
		for i := range replicas[name] {
			sv := &service{name: fmt.Sprintf("%s-%d", name, i), bin: bins[name], http: freeAddr(t), internal: freeAddr(t)}
			sv.env = append(append(append([]string{"HTTP_ADDR=" + sv.http, "INTERNAL_ADDR=" + sv.internal}, common...), own[name]...), o.Extra[name]...)
			sv.env = append(sv.env, o.ReplicaExtra[sv.name]...)
			fs.svcs[name] = append(fs.svcs[name], sv)
			fs.start(sv)
			fs.lb[name].Add(sv.http)
		}
	}
	cluster.requireReplicated()
	return fs
}

// start (re)starts a replica on its addresses and waits until it is ready.
func (fs *faultStack) start(sv *service) {
	fs.t.Helper()
	sv.runs++
	sv.p = start(fs.t, fmt.Sprintf("%s#%d", sv.name, sv.runs), sv.bin, sv.env)
	waitReady(fs.t, sv.p, "http://"+sv.internal+"/health/ready")
}

// sumMetric sums a metric over every replica of a service.
func (fs *faultStack) sumMetric(name, metricName, label string) (float64, error) {
	var sum float64
	for _, sv := range fs.svcs[name] {
		v, err := scrapeMetric(sv.internal, metricName, label)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", sv.name, err)
		}
		sum += v
	}
	return sum, nil
}

// tokensIssued is the token replicas' own count of the tokens they issued
// (never restarted in the scenarios that use it).
func (fs *faultStack) tokensIssued() int {
	fs.t.Helper()
	v, err := fs.sumMetric("token", "agentidp_tokens_issued_total", `outcome="issued"`)
	if err != nil {
		fs.t.Fatalf("token metrics: %v", err)
	}
	return int(v)
}

// consumerDrained reports whether the durable consumer on the event stream
// has nothing left: no message pending delivery and none awaiting its ack.
func (c *natsCluster) consumerDrained(durable string) (bool, error) {
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		return false, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, events.StreamName, durable)
	if err != nil {
		return false, fmt.Errorf("consumer %s: %w", durable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("consumer %s info: %w", durable, err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0, nil
}

// requireReplicated requires every stream of the cluster — the event,
// dead-letter and replay streams and every KV bucket — to have one replica
// per server: a service that ensured a bucket with another count would
// shrink it (and remap it) at each of its starts.
func (c *natsCluster) requireReplicated() {
	c.t.Helper()
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		c.t.Fatalf("connect to the NATS cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lister := js.ListStreams(ctx)
	n := 0
	for info := range lister.Info() {
		n++
		if info.Config.Replicas != len(c.nodes) {
			c.t.Errorf("stream %s has %d replicas; want %d (NATS_STREAM_REPLICAS)", info.Config.Name, info.Config.Replicas, len(c.nodes))
		}
	}
	if err := lister.Err(); err != nil {
		c.t.Fatalf("list streams: %v", err)
	}
	if n == 0 {
		c.t.Fatal("the NATS cluster holds no stream")
	}
}
