// Package deps_test checks test/install-deps.sh (`make deps`) against a stand-in `go` and
// stand-ins for the Debian tools, so that what it decides and what it prints on failure are
// tested without a network. The real install from the Go module proxy and Debian runs in CI:
// .ci/run calls `make deps` with an empty GOBIN every time.
package deps_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo answers the few go commands the script uses. `go install PKG@V` writes, in place of
// a binary, the text `go version -m` prints for one built from PKG's module at V (or at
// FAKE_BUILT_VERSION) by FAKE_BUILT_GO; `go version -m BIN` prints that text back.
const fakeGo = `#!/bin/bash
echo "go $*" >> "$FAKE_LOG"
case "$1 $2" in
"env GOBIN") echo "$FAKE_GOBIN" ;;
"env GOPATH") echo /nonexistent ;;
"env GOVERSION") echo go1.26.8 ;;
"version -m") [ -f "$3" ] && cat "$3" ;;
install*)
	if [ -n "${FAKE_INSTALL_FAIL:-}" ]; then
		echo "go: $2: invalid version: 403 Forbidden" >&2
		exit 1
	fi
	pkg=${2%@*} version=${2#*@}
	bin=$GOBIN/${pkg##*/}
	printf '%s: %s\n\tpath\t%s\n\tmod\t%s\t%s\th1:x=\n' "$bin" "${FAKE_BUILT_GO:-go1.26.8}" \
		"$pkg" "${pkg%/cmd/*}" "${FAKE_BUILT_VERSION:-$version}" > "$bin"
	;;
*) echo "fake go: unexpected: go $*" >&2; exit 2 ;;
esac
`

type run struct {
	out     string // stdout and stderr
	code    int
	goCalls string // every go command, one a line
}

// deps runs install-deps.sh with the stand-ins first on PATH and env added.
func deps(t *testing.T, gobin string, env ...string) run {
	t.Helper()
	for _, p := range []string{"/usr/bin/node", "/usr/bin/python3", "/usr/bin/gunicorn", "/usr/bin/uvicorn"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing, so the script would call apt-get: run 'make deps' first", p)
		}
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "bin")
	if err := os.Mkdir(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(fake, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("go", fakeGo)
	write("id", "#!/bin/sh\necho \"${FAKE_UID:-0}\"\n")
	write("apt-get", "#!/bin/sh\necho \"fake apt-get: unexpected: $*\" >&2\nexit 2\n")
	for _, name := range []string{"systemd-nspawn", "lintian", "wrk", "curl", "npm", "gnuplot"} {
		write(name, "#!/bin/sh\n")
	}
	log := filepath.Join(dir, "go.log")
	cmd := exec.Command("bash", "../install-deps.sh")
	cmd.Env = append([]string{
		"PATH=" + fake + ":/usr/bin:/bin",
		"FAKE_LOG=" + log,
		"FAKE_GOBIN=" + gobin,
		"HOME=" + dir,
	}, env...)
	out, err := cmd.CombinedOutput()
	r := run{out: string(out)}
	if err != nil {
		exit, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		r.code = exit.ExitCode()
	}
	calls, _ := os.ReadFile(log)
	r.goCalls = string(calls)
	return r
}

func wantCode(t *testing.T, r run, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d; output:\n%s", r.code, code, r.out)
	}
}

func wantOut(t *testing.T, r run, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(r.out, l) {
			t.Errorf("output lacks %q; output:\n%s", l, r.out)
		}
	}
}

const (
	staticcheckLine = "install-deps: go install honnef.co/go/tools/cmd/staticcheck@v0.8.2 into "
	nfpmLine        = "install-deps: go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2 into "
)

func TestInstallsPinnedVersionsOnce(t *testing.T) {
	gobin := t.TempDir()
	r := deps(t, gobin)
	wantCode(t, r, 0)
	wantOut(t, r,
		staticcheckLine+gobin+" (make check lints the code with it)",
		nfpmLine+gobin+" (make deb builds the .deb with it)",
		"install-deps: ok: ")
	if strings.Contains(r.goCalls, "@latest") {
		t.Errorf("asked for @latest:\n%s", r.goCalls)
	}

	// Run again: both are there, built from the pinned modules by this Go.
	r = deps(t, gobin)
	wantCode(t, r, 0)
	if strings.Contains(r.goCalls, "go install") {
		t.Errorf("installed again what was there:\n%s", r.goCalls)
	}
}

func TestReinstallsAnotherVersionOrAnotherGo(t *testing.T) {
	for _, tc := range []struct{ name, env string }{
		{"another module version", "FAKE_BUILT_VERSION=v0.8.1"},
		{"built by another Go", "FAKE_BUILT_GO=go1.25.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gobin := t.TempDir()
			wantCode(t, deps(t, gobin, tc.env), 1) // the binary it built is not the pinned one
			r := deps(t, gobin)
			wantCode(t, r, 0)
			wantOut(t, r, staticcheckLine, nfpmLine)
		})
	}
}

func TestFailuresSayWhatFailedAndWhatToTry(t *testing.T) {
	gobin := t.TempDir()
	for _, tc := range []struct {
		name  string
		env   []string
		lines []string
	}{{
		name: "the proxy refuses",
		env:  []string{"FAKE_INSTALL_FAIL=1"},
		lines: []string{
			"403 Forbidden", // go's own words stay
			"install-deps: FAILED: GOBIN=" + gobin + " go install honnef.co/go/tools/cmd/staticcheck@v0.8.2",
			"install-deps: try: 'go list -m -versions honnef.co/go/tools' lists the versions the proxy serves",
		},
	}, {
		name: "a build of another version",
		env:  []string{"FAKE_BUILT_VERSION=v0.8.1"},
		lines: []string{
			"install-deps: FAILED: go version -m " + gobin + "/staticcheck does not show honnef.co/go/tools v0.8.2 built by go1.26.8",
			"install-deps: try: rm " + gobin + "/staticcheck, then make deps again",
		},
	}, {
		name: "not root",
		env:  []string{"FAKE_UID=1000"},
		lines: []string{
			"install-deps: FAILED: install-deps as uid 1000",
			"install-deps: try: sudo make",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := deps(t, gobin, tc.env...)
			wantCode(t, r, 1)
			wantOut(t, r, tc.lines...)
		})
	}
}
