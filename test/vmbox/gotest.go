package vmbox

import (
	"bufio"
	"regexp"
	"strings"
)

// GoTest is one top-level test of a test binary's -test.v output.
type GoTest struct {
	Name   string
	Result string   // PASS, FAIL, SKIP, or "" if it never ended (a panic, a timeout)
	Lines  []string // what it printed, its subtests' lines included
}

var endLine = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) `)

// GoTests splits the -test.v output of a test binary whose tests run one at a time (no
// t.Parallel at the top level) into its top-level tests, in order.
func GoTests(out string) []GoTest {
	var tests []GoTest
	cur := -1
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if name, ok := strings.CutPrefix(l, "=== RUN   "); ok && !strings.Contains(name, "/") {
			tests = append(tests, GoTest{Name: name})
			cur = len(tests) - 1
			continue
		}
		if cur < 0 {
			continue
		}
		if m := endLine.FindStringSubmatch(l); m != nil && m[2] == tests[cur].Name {
			tests[cur].Result = m[1]
			cur = -1
			continue
		}
		tests[cur].Lines = append(tests[cur].Lines, l)
	}
	return tests
}

// AnyFailed reports whether a test failed or never ended.
func AnyFailed(tests []GoTest) bool {
	for _, g := range tests {
		if g.Result != "PASS" && g.Result != "SKIP" {
			return true
		}
	}
	return false
}
