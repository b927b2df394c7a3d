package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	bodyFile := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(bodyFile, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, o *Options)
	}{
		{
			name: "defaults",
			args: []string{"-url", "http://127.0.0.1:8080/"},
			check: func(t *testing.T, o *Options) {
				c := o.Config
				if c.Workers != 16 || c.Duration != 10*time.Second || c.Warmup != time.Second || c.Expect != 200 || c.Method != "GET" {
					t.Errorf("defaults = %+v", c)
				}
			},
		},
		{
			name: "full",
			args: []string{"-url", "http://h/x", "-method", "post", "-body", "a=b", "-header", "Content-Type: application/x-www-form-urlencoded",
				"-header", "X-Agentidp-Context: v1.abc:def", "-basic-auth", "id:se:cret", "-c", "4", "-d", "2s", "-warmup", "0s", "-expect", "201", "-label", "L", "-json", "-quiet"},
			check: func(t *testing.T, o *Options) {
				c := o.Config
				if c.Method != "POST" || string(c.Body) != "a=b" || c.BasicAuthUser != "id" || c.BasicAuthPass != "se:cret" ||
					c.Workers != 4 || c.Duration != 2*time.Second || c.Warmup != 0 || c.Expect != 201 || c.Label != "L" || !o.JSON || !o.Quiet {
					t.Errorf("config = %+v", c)
				}
				if got := c.Header.Get("X-Agentidp-Context"); got != "v1.abc:def" {
					t.Errorf("context header = %q", got)
				}
			},
		},
		{
			name: "body file and token",
			args: []string{"-url", "http://h/", "-body-file", bodyFile, "-token-url", "http://h/oauth2/token", "-client-id", "c", "-client-secret", "s", "-scope", "x y"},
			check: func(t *testing.T, o *Options) {
				if string(o.Config.Body) != "from-file" || o.Token != (TokenRequest{URL: "http://h/oauth2/token", ClientID: "c", ClientSecret: "s", Scope: "x y"}) {
					t.Errorf("options = %+v", o)
				}
			},
		},
		{
			name: "compare",
			args: []string{"-compare", "a.json", "b.json"},
			check: func(t *testing.T, o *Options) {
				if len(o.Compare) != 2 || o.Compare[1] != "b.json" {
					t.Errorf("Compare = %v", o.Compare)
				}
			},
		},
		{name: "missing url", args: []string{"-c", "2"}, wantErr: true},
		{name: "body and body-file", args: []string{"-url", "http://h/", "-body", "x", "-body-file", bodyFile}, wantErr: true},
		{name: "missing body-file", args: []string{"-url", "http://h/", "-body-file", bodyFile + ".nope"}, wantErr: true},
		{name: "bad header", args: []string{"-url", "http://h/", "-header", "NoColon"}, wantErr: true},
		{name: "bad basic auth", args: []string{"-url", "http://h/", "-basic-auth", "nocolon"}, wantErr: true},
		{name: "token without client id", args: []string{"-url", "http://h/", "-token-url", "http://h/t"}, wantErr: true},
		{name: "token and basic auth", args: []string{"-url", "http://h/", "-token-url", "http://h/t", "-client-id", "c", "-basic-auth", "a:b"}, wantErr: true},
		{name: "zero workers", args: []string{"-url", "http://h/", "-c", "0"}, wantErr: true},
		{name: "compare one file", args: []string{"-compare", "a.json"}, wantErr: true},
		{name: "stray argument", args: []string{"-url", "http://h/", "extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseArgs(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}
}

func TestMainWithTokenJSONAndCompare(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "cid" || p != "csecret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"tok","token_type":"Bearer"}`))
	})
	mux.HandleFunc("GET /api/v1/agents", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"agents":[]}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	run := func(label, secret string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), []string{
			"-url", srv.URL + "/api/v1/agents?limit=1", "-c", "2", "-d", "150ms", "-warmup", "0s", "-json", "-quiet", "-label", label,
			"-token-url", srv.URL + "/oauth2/token", "-client-id", "cid", "-client-secret", secret,
		}, &out, &errb)
		path := filepath.Join(dir, label+".json")
		if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if errb.Len() > 0 && code == ExitOK {
			t.Errorf("unexpected stderr: %s", errb.String())
		}
		return code, path
	}

	code, first := run("first", "csecret")
	if code != ExitOK {
		t.Fatalf("exit code %d", code)
	}
	r, err := ReadResult(first)
	if err != nil {
		t.Fatal(err)
	}
	if r.Label != "first" || r.Requests == 0 || r.Errors != 0 || r.Workers != 2 {
		t.Errorf("result = %+v", r)
	}
	_, second := run("second", "csecret")

	// Human output on stdout plus -json-out.
	jsonOut := filepath.Join(dir, "third.json")
	var human bytes.Buffer
	if code := Main(context.Background(), []string{"-url", srv.URL + "/api/v1/agents", "-c", "1", "-d", "50ms", "-warmup", "0s", "-quiet",
		"-expect", "401", "-label", "third", "-json-out", jsonOut}, &human, io.Discard); code != ExitOK {
		t.Fatalf("third: exit code %d", code)
	}
	if !strings.Contains(human.String(), "label:     third") || !strings.Contains(human.String(), "latency ms: p50 ") {
		t.Errorf("human report:\n%s", human.String())
	}
	if r3, err := ReadResult(jsonOut); err != nil || r3.Label != "third" || r3.Expect != 401 || r3.Requests == 0 {
		t.Errorf("-json-out result %+v, err %v", r3, err)
	}

	if code, _ := run("badsecret", "wrong"); code != ExitFailed {
		t.Errorf("bad secret: exit code %d, want %d", code, ExitFailed)
	}

	var out bytes.Buffer
	if code := Main(context.Background(), []string{"-compare", first, second}, &out, io.Discard); code != ExitOK {
		t.Fatalf("compare exit code %d", code)
	}
	for _, want := range []string{"first", "second", "p50 ms", "p99 ms", "req/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("comparison lacks %q:\n%s", want, out.String())
		}
	}
}

func TestMainFailsWhenNothingSucceeds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	code := Main(context.Background(), []string{"-url", srv.URL, "-c", "1", "-d", "50ms", "-warmup", "0s", "-quiet"}, &out, io.Discard)
	if code != ExitFailed {
		t.Errorf("exit code %d, want %d", code, ExitFailed)
	}
	if !strings.Contains(out.String(), "status 503") {
		t.Errorf("report lacks per-status errors:\n%s", out.String())
	}
}

func TestWriteComparison(t *testing.T) {
	base := &Result{Label: "direct", RPS: 1000, Latency: LatencyMS{P50: 1, P99: 2}}
	other := &Result{Label: "gateway", RPS: 800, Latency: LatencyMS{P50: 1.5, P99: 3}}
	var out bytes.Buffer
	if err := WriteComparison(&out, base, other); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ metric, want string }{
		{"req/s", "-200.000"},
		{"p50 ms", "+0.500"},
		{"p99 ms", "+1.000"},
		{"p99 ms", "+50.0%"},
		{"p90 ms", "n/a"},
	}
	for _, tt := range tests {
		var line string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, tt.metric+" ") {
				line = l
			}
		}
		if !strings.Contains(line, tt.want) {
			t.Errorf("%s line %q lacks %q", tt.metric, line, tt.want)
		}
	}
	var js bytes.Buffer
	if err := json.NewEncoder(&js).Encode(base); err != nil || !strings.Contains(js.String(), `"p99_9"`) {
		t.Errorf("json = %s, err %v", js.String(), err)
	}
}
