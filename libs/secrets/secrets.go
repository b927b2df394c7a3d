package secrets

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Store keeps versioned secrets at slash-separated paths (e.g.
// "token/signing-keys/<kid>").
type Store interface {
	// Put writes a new version of the secret at path and returns its version
	// (1, 2, ...). Concurrent Puts to one path each get a distinct version.
	Put(ctx context.Context, path string, data map[string]string) (version int, err error)
	// Get returns the latest non-deleted version. ErrNotFound when absent.
	Get(ctx context.Context, path string) (Secret, error)
	// GetVersion returns a specific version. ErrNotFound when absent,
	// deleted or destroyed (and for version < 1).
	GetVersion(ctx context.Context, path string, version int) (Secret, error)
	// List returns the child names directly under prefix ("" is the root; a
	// trailing "/" on prefix is allowed), sorted; a child that has children
	// of its own is returned with a trailing "/" (a folder). A name can be
	// both a secret and a folder ("a" and "a/"). Nothing under prefix gives
	// an empty list, not an error.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the secret and all its versions (KV v2 metadata delete):
	// the next Put at path starts again at version 1. Deleting a missing
	// path is not an error.
	Delete(ctx context.Context, path string) error
	// Ping reports whether the backend is reachable and unsealed.
	Ping(ctx context.Context) error
}

// Secret is one version of a secret.
type Secret struct {
	// Data holds the key/value pairs written by Put (never nil).
	Data map[string]string
	// Version is the version number, starting at 1.
	Version int
	// CreatedAt is when this version was written (UTC).
	CreatedAt time.Time
}

var (
	// ErrNotFound means the path or version does not exist (or was deleted
	// or destroyed).
	ErrNotFound = errors.New("secrets: not found")
	// ErrUnavailable means the backend cannot serve now: sealed,
	// unreachable, timing out or answering 5xx/429. Retry later.
	ErrUnavailable = errors.New("secrets: backend unavailable")
	// ErrInvalidPath means the path (or list prefix) is malformed.
	ErrInvalidPath = errors.New("secrets: invalid path")
	// ErrPermissionDenied means the backend refused the credentials (Vault
	// 403, failed AppRole login): a configuration problem, not transient.
	ErrPermissionDenied = errors.New("secrets: permission denied")
)

// MaxPathLen is the longest valid path.
const MaxPathLen = 512

// ValidatePath reports whether path is a valid secret path: non-empty
// segments of [A-Za-z0-9._-] separated by single slashes, no "." or ".."
// (nor ".." anywhere), at most MaxPathLen characters. The error wraps
// ErrInvalidPath and quotes the path (paths are names, not secrets).
func ValidatePath(path string) error {
	if why := pathProblem(path); why != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidPath, truncate(path, 80), why)
	}
	return nil
}

func pathProblem(path string) string {
	switch {
	case path == "":
		return "empty"
	case len(path) > MaxPathLen:
		return fmt.Sprintf("longer than %d characters", MaxPathLen)
	case strings.Contains(path, ".."):
		return `contains ".."`
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			return "empty segment (leading, trailing or double slash)"
		}
		if seg == "." {
			return `segment "."`
		}
		for i := 0; i < len(seg); i++ {
			if !pathByte(seg[i]) {
				return "segments may contain only A-Z a-z 0-9 . _ -"
			}
		}
	}
	return ""
}

func pathByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// listBase validates a List prefix and returns it without its trailing
// slash ("" for the root).
func listBase(prefix string) (string, error) {
	base := strings.TrimSuffix(prefix, "/")
	if base == "" && prefix != "/" {
		return "", nil
	}
	if err := ValidatePath(base); err != nil {
		return "", err
	}
	return base, nil
}

// children turns full paths under base into the sorted, de-duplicated direct
// child names of base, folders marked with a trailing "/".
func childNames(base string, paths []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, p := range paths {
		rest := p
		if base != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(p, base+"/"); !ok {
				continue
			}
		}
		if rest == "" {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		if !seen[rest] {
			seen[rest] = true
			out = append(out, rest)
		}
	}
	slices.Sort(out)
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
