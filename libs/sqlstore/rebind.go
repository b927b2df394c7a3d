package sqlstore

import (
	"strconv"
	"strings"
)

// Rebind converts '?' placeholders to $1..$n when d is Postgres and returns
// query unchanged otherwise. A '?' inside a single-quoted string literal
// (doubled quotes included), a double-quoted identifier, a -- line comment or a
// /* block comment */ is left alone.
func Rebind(d Driver, query string) string {
	if d != Postgres || strings.IndexByte(query, '?') < 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(query) && query[j] != c {
				j++
			}
			// j is at the closing quote (or end); a doubled quote simply
			// closes and reopens, which this loop handles on the next turn.
			if j < len(query) {
				j++
			}
			b.WriteString(query[i:j])
			i = j - 1
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j - 1
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			j := strings.Index(query[i+2:], "*/")
			end := len(query)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(query[i:end])
			i = end - 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
