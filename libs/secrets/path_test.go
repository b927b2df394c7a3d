package secrets_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentidp/agentidp/libs/secrets"
)

func TestValidatePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		ok   bool
	}{
		{"a", true},
		{"token/signing-keys/kid-1.v2_x", true},
		{"A.b-C_9", true},
		{strings.Repeat("a", secrets.MaxPathLen), true},
		{strings.Repeat("a", secrets.MaxPathLen+1), false},
		{"", false},
		{"a/", false},
		{"/a", false},
		{"a//b", false},
		{"..", false},
		{"a/../b", false},
		{"a..b", false},
		{".", false},
		{"a/./b", false},
		{"a b", false},
		{"a:b", false},
		{"ä", false},
	}
	for _, tc := range tests {
		err := secrets.ValidatePath(tc.path)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, secrets.ErrInvalidPath)) {
			t.Errorf("ValidatePath(%.20q) = %v; want ok=%v", tc.path, err, tc.ok)
		}
	}
}
