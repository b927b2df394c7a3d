package jose

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestAudienceJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		want     Audience
		wantOut  string
		wantFail bool
	}{
		{name: "string", in: `"a"`, want: Audience{"a"}, wantOut: `"a"`},
		{name: "array of one", in: `["a"]`, want: Audience{"a"}, wantOut: `"a"`},
		{name: "array", in: `["a","b"]`, want: Audience{"a", "b"}, wantOut: `["a","b"]`},
		{name: "null", in: `null`, want: nil, wantOut: `null`},
		{name: "escaped string", in: `"a\u002fb"`, want: Audience{"a/b"}, wantOut: `"a/b"`},
		{name: "non-ASCII string", in: `"é"`, want: Audience{"é"}, wantOut: `"é"`},
		{name: "invalid UTF-8 replaced", in: "\"a\xffb\"", want: Audience{"a\ufffdb"}, wantOut: "\"a\ufffdb\""},
		{name: "empty string", in: `""`, want: Audience{""}, wantOut: `""`},
		{name: "number", in: `1`, wantFail: true},
		{name: "array of numbers", in: `[1]`, wantFail: true},
		{name: "object", in: `{"a":1}`, wantFail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got Audience
			err := json.Unmarshal([]byte(tc.in), &got)
			if tc.wantFail {
				if err == nil {
					t.Errorf("Unmarshal(%s) = %q, nil; want error", tc.in, got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Unmarshal(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			out, err := json.Marshal(got)
			if err != nil || string(out) != tc.wantOut {
				t.Errorf("Marshal(%q) = %s, %v; want %s", got, out, err, tc.wantOut)
			}
		})
	}
}

func TestRegisteredClaimsOmitEmptyAudience(t *testing.T) {
	t.Parallel()
	out, err := json.Marshal(RegisteredClaims{Issuer: "i", ExpiresAt: 2})
	want := `{"iss":"i","sub":"","exp":2,"iat":0,"jti":""}`
	if err != nil || string(out) != want {
		t.Errorf("Marshal(RegisteredClaims) = %s, %v; want %s", out, err, want)
	}
}
