// Package loadgen implements a closed-loop HTTP load generator: a fixed
// number of workers each send one request at a time, back to back, over a
// shared keep-alive transport for a fixed duration after a discarded warmup.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one load run.
type Config struct {
	// Label names the run in the report (optional).
	Label string
	// URL is the absolute http or https target.
	URL string
	// Method is the HTTP method; empty means GET.
	Method string
	// Body is sent with every request (may be empty).
	Body []byte
	// Header holds extra request headers; a Host entry overrides the
	// request host.
	Header http.Header
	// BasicAuthUser/BasicAuthPass set HTTP basic auth when BasicAuthUser
	// is non-empty. They are sent verbatim (not form-urlencoded).
	BasicAuthUser string
	BasicAuthPass string
	// BearerToken, when non-empty, is sent as "Authorization: Bearer ...".
	BearerToken string
	// BearerTokens, when non-empty, are sent as "Authorization: Bearer ..."
	// round-robin: worker i starts at token i*len/Workers and each worker
	// steps through the list with its own index (no shared state).
	// Mutually exclusive with BearerToken and basic auth.
	BearerTokens []string
	// Workers is the number of concurrent closed-loop workers (>= 1).
	Workers int
	// Duration is the measured period (> 0).
	Duration time.Duration
	// Warmup runs before Duration; its results are discarded (>= 0).
	Warmup time.Duration
	// Timeout bounds each request; 0 means no per-request timeout.
	Timeout time.Duration
	// Expect is the status code counted as success; 0 means 200.
	Expect int
	// Progress, when non-nil, receives one line per second.
	Progress io.Writer
}

// LatencyMS holds latency statistics in milliseconds.
type LatencyMS struct {
	// P50, P90, P99 and P999 are the 50th, 90th, 99th and 99.9th
	// percentiles (nearest rank, ~0.4% precision).
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	// Max, Min and Mean are exact.
	Max  float64 `json:"max"`
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
}

// Result is the outcome of a run. Latencies cover every request that got an
// HTTP response (whatever its status) during the measured period; transport
// errors have no latency.
type Result struct {
	// Label, Method, URL, Workers and Expect echo the configuration.
	Label   string `json:"label,omitempty"`
	Method  string `json:"method"`
	URL     string `json:"url"`
	Workers int    `json:"workers"`
	Expect  int    `json:"expect"`
	// Warmup and Duration are the requested periods (time.Duration syntax).
	Warmup   string `json:"warmup"`
	Duration string `json:"duration"`
	// DurationSeconds is the measured wall time (shorter than requested
	// when interrupted).
	DurationSeconds float64 `json:"duration_s"`
	// Requests counts requests completed during the measured period,
	// including errors.
	Requests uint64 `json:"requests"`
	// Errors counts unexpected statuses plus transport errors.
	Errors uint64 `json:"errors"`
	// ErrorsByStatus counts responses whose status was not Expect.
	ErrorsByStatus map[int]uint64 `json:"errors_by_status,omitempty"`
	// TransportErrors counts requests that got no usable response.
	TransportErrors uint64 `json:"transport_errors"`
	// TransportErrorSamples counts transport errors by message (at most
	// maxErrorSamples distinct messages, the rest under "other").
	TransportErrorSamples map[string]uint64 `json:"transport_error_samples,omitempty"`
	// RPS is Requests per measured second; SuccessRPS excludes errors.
	RPS        float64   `json:"rps"`
	SuccessRPS float64   `json:"success_rps"`
	Latency    LatencyMS `json:"latency_ms"`
	// Interrupted is true when the parent context ended the run early.
	Interrupted bool `json:"interrupted,omitempty"`
}

// maxErrorSamples bounds the distinct transport error messages kept per worker.
const maxErrorSamples = 8

// worker holds one worker's private statistics; only the owning goroutine
// writes them, except done, which the progress reporter reads atomically.
type worker struct {
	hist          Histogram
	requests      uint64
	byStatus      map[int]uint64
	transportErrs uint64
	errSamples    map[string]uint64
	done          atomic.Uint64
	// auth holds the "Bearer ..." values of Config.BearerTokens (shared,
	// read-only); next is this worker's own index into it.
	auth []string
	next int
}

// startOffset returns where worker i of workers starts in a list of n
// tokens: the workers are spread evenly over the list so that they do not
// all send the same token at the same time.
func startOffset(i, workers, n int) int {
	if n == 0 || workers <= 0 {
		return 0
	}
	return int(int64(i) * int64(n) / int64(workers))
}

// checkToken rejects a token that cannot be sent in an Authorization header.
func checkToken(t string) error {
	if t == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("contains whitespace or a control character at byte %d", i+1)
		}
	}
	return nil
}

func (w *worker) transportError(err error) {
	w.requests++
	w.transportErrs++
	msg := err.Error()
	if _, ok := w.errSamples[msg]; !ok && len(w.errSamples) >= maxErrorSamples {
		msg = "other"
	}
	w.errSamples[msg]++
}

// NewTransport returns the keep-alive transport used by Run: at most workers
// connections to the target, all of which may stay idle between requests,
// no compression and no proxy.
func NewTransport(workers int) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers,
		MaxConnsPerHost:     workers,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
	}
}

// NewClient returns a client over tr that does not follow redirects (a
// redirect is reported as its own status) and applies timeout per request.
func NewClient(tr http.RoundTripper, timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

var validMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true,
}

func (c *Config) normalize() error {
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	c.Method = strings.ToUpper(c.Method)
	if !validMethods[c.Method] {
		return fmt.Errorf("unsupported method %q", c.Method)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("parse url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an absolute http or https URL", c.URL)
	}
	if c.Workers < 1 {
		return fmt.Errorf("workers must be >= 1, got %d", c.Workers)
	}
	if c.Duration <= 0 {
		return fmt.Errorf("duration must be > 0, got %s", c.Duration)
	}
	if c.Warmup < 0 || c.Timeout < 0 {
		return fmt.Errorf("warmup and timeout must be >= 0")
	}
	if c.Expect == 0 {
		c.Expect = http.StatusOK
	}
	if c.Expect < 100 || c.Expect > 599 {
		return fmt.Errorf("expect status %d out of range", c.Expect)
	}
	if c.BearerToken != "" && c.BasicAuthUser != "" {
		return fmt.Errorf("basic auth and bearer token are mutually exclusive")
	}
	if len(c.BearerTokens) > 0 && (c.BearerToken != "" || c.BasicAuthUser != "") {
		return fmt.Errorf("bearer token list is mutually exclusive with a single bearer token and basic auth")
	}
	for i, t := range c.BearerTokens {
		if err := checkToken(t); err != nil {
			return fmt.Errorf("bearer token %d: %w", i+1, err)
		}
	}
	return nil
}

// template builds the request every worker clones.
func (c *Config) template() (*http.Request, error) {
	var body io.Reader
	if len(c.Body) > 0 {
		body = strings.NewReader(string(c.Body))
	}
	req, err := http.NewRequest(c.Method, c.URL, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, vs := range c.Header {
		if strings.EqualFold(k, "Host") {
			if len(vs) > 0 {
				req.Host = vs[len(vs)-1]
			}
			continue
		}
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c.BasicAuthUser != "" {
		req.SetBasicAuth(c.BasicAuthUser, c.BasicAuthPass)
	}
	if c.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.BearerToken)
	}
	return req, nil
}

// Run executes the load described by cfg using client and returns the
// merged result. If client is nil a client over NewTransport(cfg.Workers) is
// used. Run returns after Warmup+Duration at the latest (requests in flight
// at that point are cancelled and discarded), or earlier when ctx ends, in
// which case the partial result is marked Interrupted.
func Run(ctx context.Context, cfg Config, client *http.Client) (*Result, error) {
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("loadgen config: %w", err)
	}
	tmpl, err := cfg.template()
	if err != nil {
		return nil, fmt.Errorf("loadgen config: %w", err)
	}
	if client == nil {
		tr := NewTransport(cfg.Workers)
		defer tr.CloseIdleConnections()
		client = NewClient(tr, cfg.Timeout)
	}

	workers := make([]*worker, cfg.Workers)
	for i := range workers {
		workers[i] = &worker{byStatus: map[int]uint64{}, errSamples: map[string]uint64{}}
	}

	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	end := measureStart.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	// Precompute the header values so the hot path does not allocate them.
	auth := make([]string, len(cfg.BearerTokens))
	for i, t := range cfg.BearerTokens {
		auth[i] = "Bearer " + t
	}

	var wg sync.WaitGroup
	for i, w := range workers {
		w.auth, w.next = auth, startOffset(i, cfg.Workers, len(auth))
		wg.Go(func() { w.loop(runCtx, client, tmpl, cfg.Expect, measureStart, end) })
	}
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	if cfg.Progress != nil {
		progressDone.Go(func() { reportProgress(cfg.Progress, workers, start, measureStart, stopProgress) })
	}
	wg.Wait()
	finished := time.Now()
	close(stopProgress)
	progressDone.Wait()

	stop := finished
	if stop.After(end) {
		stop = end
	}
	measured := max(stop.Sub(measureStart), 0) // 0 when interrupted during warmup
	return buildResult(cfg, workers, measured, ctx.Err() != nil), nil
}

// loop is one closed-loop worker.
func (w *worker) loop(ctx context.Context, client *http.Client, tmpl *http.Request, expect int, measureStart, end time.Time) {
	for ctx.Err() == nil {
		req := tmpl.Clone(ctx)
		if len(w.auth) > 0 {
			req.Header.Set("Authorization", w.auth[w.next])
			if w.next++; w.next == len(w.auth) {
				w.next = 0
			}
		}
		if tmpl.GetBody != nil {
			body, err := tmpl.GetBody()
			if err != nil {
				w.transportError(fmt.Errorf("body: %w", err))
				return
			}
			req.Body = body
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil || time.Now().After(end) {
				return // cut off by the end of the run: discard
			}
			w.done.Add(1)
			if !t0.Before(measureStart) {
				w.transportError(err)
			}
			continue
		}
		_, copyErr := io.Copy(io.Discard, resp.Body)
		closeErr := resp.Body.Close()
		t1 := time.Now()
		if ctx.Err() != nil && (copyErr != nil || closeErr != nil) {
			return
		}
		w.done.Add(1)
		if t1.After(end) {
			return // finished after the end (the deadline timer may lag): discard
		}
		if t0.Before(measureStart) {
			continue
		}
		if err := errors.Join(copyErr, closeErr); err != nil {
			w.transportError(fmt.Errorf("read body: %w", err))
			continue
		}
		w.requests++
		w.hist.Record(t1.Sub(t0))
		if resp.StatusCode != expect {
			w.byStatus[resp.StatusCode]++
		}
	}
}

// reportProgress prints one line per second until stop is closed.
func reportProgress(out io.Writer, workers []*worker, start, measureStart time.Time, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last uint64
	lastAt := start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var total uint64
			for _, w := range workers {
				total += w.done.Load()
			}
			phase := "run"
			if now.Before(measureStart) {
				phase = "warmup"
			}
			rate := float64(total-last) / now.Sub(lastAt).Seconds()
			_, _ = fmt.Fprintf(out, "loadgen: %5.1fs %-6s %10.1f req/s (completed %d)\n",
				now.Sub(start).Seconds(), phase, rate, total)
			last, lastAt = total, now
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func buildResult(cfg Config, workers []*worker, measured time.Duration, interrupted bool) *Result {
	var hist Histogram
	r := &Result{
		Label:                 cfg.Label,
		Method:                cfg.Method,
		URL:                   cfg.URL,
		Workers:               cfg.Workers,
		Expect:                cfg.Expect,
		Warmup:                cfg.Warmup.String(),
		Duration:              cfg.Duration.String(),
		DurationSeconds:       measured.Seconds(),
		ErrorsByStatus:        map[int]uint64{},
		TransportErrorSamples: map[string]uint64{},
		Interrupted:           interrupted,
	}
	for _, w := range workers {
		hist.Merge(&w.hist)
		r.Requests += w.requests
		r.TransportErrors += w.transportErrs
		for s, n := range w.byStatus {
			r.ErrorsByStatus[s] += n
			r.Errors += n
		}
		for m, n := range w.errSamples {
			r.TransportErrorSamples[m] += n
		}
	}
	r.Errors += r.TransportErrors
	if measured > 0 {
		r.RPS = float64(r.Requests) / measured.Seconds()
		r.SuccessRPS = float64(r.Requests-r.Errors) / measured.Seconds()
	}
	r.Latency = LatencyMS{
		P50:  ms(hist.Percentile(0.50)),
		P90:  ms(hist.Percentile(0.90)),
		P99:  ms(hist.Percentile(0.99)),
		P999: ms(hist.Percentile(0.999)),
		Max:  ms(hist.Max()),
		Min:  ms(hist.Min()),
		Mean: ms(hist.Mean()),
	}
	return r
}

// WriteText writes a human-readable report of r.
func WriteText(out io.Writer, r *Result) error {
	var b strings.Builder
	if r.Label != "" {
		fmt.Fprintf(&b, "label:     %s\n", r.Label)
	}
	fmt.Fprintf(&b, "target:    %s %s (expect %d)\n", r.Method, r.URL, r.Expect)
	fmt.Fprintf(&b, "workers:   %d\n", r.Workers)
	fmt.Fprintf(&b, "duration:  %.3fs measured (requested %s, warmup %s discarded)", r.DurationSeconds, r.Duration, r.Warmup)
	if r.Interrupted {
		b.WriteString(" INTERRUPTED")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "requests:  %d\n", r.Requests)
	pct := 0.0
	if r.Requests > 0 {
		pct = 100 * float64(r.Errors) / float64(r.Requests)
	}
	fmt.Fprintf(&b, "errors:    %d (%.2f%%)\n", r.Errors, pct)
	statuses := make([]int, 0, len(r.ErrorsByStatus))
	for s := range r.ErrorsByStatus {
		statuses = append(statuses, s)
	}
	sort.Ints(statuses)
	for _, s := range statuses {
		fmt.Fprintf(&b, "  status %d: %d\n", s, r.ErrorsByStatus[s])
	}
	if r.TransportErrors > 0 {
		fmt.Fprintf(&b, "  transport: %d\n", r.TransportErrors)
		msgs := make([]string, 0, len(r.TransportErrorSamples))
		for m := range r.TransportErrorSamples {
			msgs = append(msgs, m)
		}
		sort.Strings(msgs)
		for _, m := range msgs {
			fmt.Fprintf(&b, "    %d x %s\n", r.TransportErrorSamples[m], m)
		}
	}
	fmt.Fprintf(&b, "req/s:     %.1f (success %.1f)\n", r.RPS, r.SuccessRPS)
	l := r.Latency
	fmt.Fprintf(&b, "latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (min %.3f mean %.3f)\n",
		l.P50, l.P90, l.P99, l.P999, l.Max, l.Min, l.Mean)
	if _, err := io.WriteString(out, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
