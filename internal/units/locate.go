package units

import (
	"strings"
)

// locator finds where a key's value starts in a TOML document, so that
// errors found after decoding can still point at file:line:column.
//
// BurntSushi/toml keeps key positions private; pool files are small and flat
// (top-level keys plus the [restart] and [sandbox] tables), so a line scanner
// that tracks the current [table] header is enough. A key it cannot find is
// reported at line 0, which Error prints as the file alone.
type locator struct {
	lines []string
}

func newLocator(src []byte) *locator {
	return &locator{lines: strings.Split(string(src), "\n")}
}

// find returns the 1-based line and column of the value of key (dotted,
// e.g. "sandbox.network"), or of the key itself when the value is not on the
// same line. It returns 0, 0 when the key is not found.
func (l *locator) find(key string) (line, col int) {
	table := ""
	for i, raw := range l.lines {
		s := strings.TrimSpace(raw)
		if s == "" || s[0] == '#' {
			continue
		}
		if s[0] == '[' {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				continue
			}
			table = normKey(strings.Trim(s[1:end], "[] \t"))
			continue
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			continue
		}
		k := normKey(s[:eq])
		if table != "" {
			k = table + "." + k
		}
		if k != key {
			continue
		}
		indent := len(raw) - len(strings.TrimLeft(raw, " \t"))
		valStart := eq + 1
		for valStart < len(s) && (s[valStart] == ' ' || s[valStart] == '\t') {
			valStart++
		}
		if valStart >= len(s) {
			return i + 1, indent + 1
		}
		return i + 1, indent + valStart + 1
	}
	return 0, 0
}

// normKey turns `a . "b"` into `a.b`.
func normKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') && p[len(p)-1] == p[0] {
			p = p[1 : len(p)-1]
		}
		parts[i] = p
	}
	return strings.Join(parts, ".")
}
