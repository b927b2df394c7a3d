package httpx

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/labstack/echo/v4"
)

type body struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func newTestEcho(t *testing.T) *echo.Echo {
	t.Helper()
	e := NewEcho(slog.New(slog.DiscardHandler))
	e.POST("/things", func(c echo.Context) error {
		var b body
		if err := Bind(c, &b); err != nil {
			return err
		}
		return JSON(c, http.StatusCreated, b)
	})
	e.GET("/boom", func(c echo.Context) error { panic("boom") })
	e.GET("/limited", func(c echo.Context) error {
		return TooMany(CodeTierLimit, "daily limit reached", 90*time.Second)
	})
	return e
}

func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder) Problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q; want application/problem+json", ct)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("decode problem %q: %v", rec.Body.String(), err)
	}
	return p
}

func TestBind(t *testing.T) {
	t.Parallel()
	e := newTestEcho(t)
	tests := []struct {
		name       string
		body       string
		ctype      string
		wantStatus int
		wantCode   string
	}{
		{"valid", `{"name":"a","count":1}`, "application/json", 201, ""},
		{"malformed", `{"name":`, "application/json", 400, CodeValidation},
		{"unknown field", `{"name":"a","extra":1}`, "application/json", 400, CodeValidation},
		{"wrong type", `{"count":"x"}`, "application/json", 400, CodeValidation},
		{"trailing data", `{"name":"a"}{"name":"b"}`, "application/json", 400, CodeValidation},
		{"empty", ``, "application/json", 400, CodeValidation},
		{"not json", `name=a`, "application/x-www-form-urlencoded", 415, CodeUnsupported},
		{"too large", `{"name":"` + strings.Repeat("a", DefaultBodyLimit) + `"}`, "application/json", 413, CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodPost, "/things", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.ctype)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("POST %s = %d %s; want %d", tt.name, rec.Code, rec.Body.String(), tt.wantStatus)
			}
			if tt.wantCode != "" {
				if p := decodeProblem(t, rec); p.Code != tt.wantCode || p.Status != tt.wantStatus || p.Message == "" {
					t.Errorf("problem = %+v; want code %s", p, tt.wantCode)
				}
			}
		})
	}
}

func TestErrorsRender(t *testing.T) {
	t.Parallel()
	e := newTestEcho(t)
	tests := []struct {
		path       string
		wantStatus int
		wantCode   string
	}{
		{"/boom", 500, CodeInternal},
		{"/nowhere", 404, CodeNotFound},
		{"/limited", 429, CodeTierLimit},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != tt.wantStatus {
			t.Errorf("GET %s = %d; want %d", tt.path, rec.Code, tt.wantStatus)
			continue
		}
		p := decodeProblem(t, rec)
		if p.Code != tt.wantCode {
			t.Errorf("GET %s code = %q; want %q", tt.path, p.Code, tt.wantCode)
		}
		if strings.Contains(rec.Body.String(), "boom") {
			t.Errorf("GET %s leaks the panic value: %s", tt.path, rec.Body.String())
		}
		if rec.Header().Get(RequestIDHeader) == "" {
			t.Errorf("GET %s has no %s", tt.path, RequestIDHeader)
		}
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/limited", nil))
	if got := rec.Header().Get("Retry-After"); got != "90" {
		t.Errorf("Retry-After = %q; want 90", got)
	}
}

func TestRequireIdentity(t *testing.T) {
	t.Parallel()
	codec, err := authn.NewCodec([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEcho(slog.New(slog.DiscardHandler))
	e.Use(RequireIdentity(codec, func(_, path string) bool { return path == "/public" }))
	handler := func(c echo.Context) error {
		id, ok := Identity(c)
		return c.String(200, id.Subject+":"+map[bool]string{true: "auth", false: "anon"}[ok])
	}
	e.GET("/private", handler)
	e.GET("/private/other", handler)
	e.DELETE("/private", handler)
	e.GET("/public", handler)
	signed, _ := codec.Sign(authn.Identity{Subject: "agent-1", OrgID: "org-1", ExpiresAt: time.Now().Add(time.Hour).Unix(),
		Method: http.MethodGet, Path: "/private"})
	tests := []struct {
		name, method, path, header string
		wantStatus                 int
		wantBody                   string
	}{
		{"no context", "GET", "/private", "", 401, ""},
		{"forged context", "GET", "/private", "eyJzdWIiOiJ4In0.AAAA", 401, ""},
		{"valid context", "GET", "/private", signed, 200, "agent-1:auth"},
		{"valid context, query string", "GET", "/private?page=2", signed, 200, "agent-1:auth"},
		{"replayed on another path", "GET", "/private/other", signed, 401, ""},
		{"replayed with another method", "DELETE", "/private", signed, 401, ""},
		{"public route", "GET", "/public", "", 200, ":anon"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.header != "" {
			req.Header.Set(authn.Header, tt.header)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tt.wantStatus || (tt.wantBody != "" && rec.Body.String() != tt.wantBody) {
			t.Errorf("%s: %s %s = %d %q; want %d %q", tt.name, tt.method, tt.path, rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
		}
	}
}

func TestParsePage(t *testing.T) {
	t.Parallel()
	e := echo.New()
	tests := []struct {
		query   string
		want    Page
		wantErr bool
	}{
		{"", Page{1, 20}, false},
		{"page=3&limit=50", Page{3, 50}, false},
		{"limit=101", Page{}, true},
		{"page=0", Page{}, true},
		{"page=x", Page{}, true},
	}
	for _, tt := range tests {
		c := e.NewContext(httptest.NewRequest(http.MethodGet, "/?"+tt.query, nil), httptest.NewRecorder())
		got, err := ParsePage(c, 20, 100)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParsePage(%q) = %+v, %v; want %+v, err=%v", tt.query, got, err, tt.want, tt.wantErr)
		}
	}
	if p := NewPagination(Page{1, 20}, 41); p.TotalPages != 3 {
		t.Errorf("NewPagination(41/20).TotalPages = %d; want 3", p.TotalPages)
	}
}
