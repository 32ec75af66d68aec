package units

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// FuzzParse: no pool file makes Parse panic; a pool it accepts renders, and
// its ExecStart/Environment lines stay one line each.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/pools/*.toml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(string(b))
	}
	f.Add("exec = [\"/bin/x\"]\nlisten = [\":1\"]\n[sandbox]\nnetwork = \"outbound\"")
	f.Add("exec = [\"/a\\\"b%c$d\"]\nlisten = [\"[::1]:1\", \"/run/x\"]")
	f.Add("exec = [\"/usr/bin/node\", \"/srv/s/current/index.js\"]\nlisten = [\":1\"]\nrelease = \"/srv/s/current\"\nkeep_releases = 3\ncanary = \"30s\"\nhealth = \"GET /health?a=1\"")
	f.Add("exec = [\"/bin/x\"]\nlisten = [\":1\"]\nworking_directory = \"/srv/s/current\"\nrelease = \"/srv/s/current\"\nhealth = \"HEAD /\"")
	f.Add("exec = [\"/bin/x\"]\nlisten = [\":1\"]\ninstances = 3\nspares = 1\nbalance = \"sticky\"")
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Parse("f.toml", "f", []byte(src))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		// An accepted health is a method, one space and a path that a
		// request line can carry as it is.
		if p.Health != "" && (p.HealthMethod+" "+p.HealthPath != p.Health || !strings.HasPrefix(p.HealthPath, "/") ||
			strings.ContainsFunc(p.HealthPath, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })) {
			t.Fatalf("health %q parsed as method %q, path %q", p.Health, p.HealthMethod, p.HealthPath)
		}
		// Accepted spares leave an instance in rotation, with steering to
		// keep them out of it.
		if p.Spares != 0 && (p.Spares < 0 || !p.Steering || !p.Balance.PerInstance() || p.Instances > 0 && p.Spares >= p.Instances) {
			t.Fatalf("spares = %d accepted with instances = %d, steering %v, balance %q", p.Spares, p.Instances, p.Steering, p.Balance)
		}
		// An accepted release link is one exec or working_directory goes through.
		if p.Release != "" {
			under := func(s string) bool { return s == p.Release || strings.HasPrefix(s, p.Release+"/") }
			if !under(p.WorkingDirectory) && !slices.ContainsFunc(p.Exec, under) {
				t.Fatalf("release %q, which neither exec %q nor working_directory %q goes through", p.Release, p.Exec, p.WorkingDirectory)
			}
		}
		for _, file := range Render(p, 2) {
			for _, line := range strings.Split(string(file.Data), "\n") {
				if strings.ContainsAny(line, "\r\x00") {
					t.Fatalf("control character in %s line %q", file.Name, line)
				}
			}
		}
	})
}

// FuzzListen: parseListen never panics and accepted addresses are stable.
func FuzzListen(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::1]:443", ":8080", "/run/x.sock", "localhost:1", "[fe80::1%eth0]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, a string) {
		l, msg := parseListen(a)
		if msg != "" {
			return
		}
		l2, msg2 := parseListen(l.Address)
		if msg2 != "" || l2 != l {
			t.Fatalf("parseListen(%q) = %+v, but its address parses as %+v %q", a, l, l2, msg2)
		}
	})
}

// FuzzParseExit: ParseExit never panics, and a record it accepts is three
// words without spaces or control characters that it reads back the same.
func FuzzParseExit(f *testing.F) {
	for _, s := range []string{"success exited 0", "exit-code exited 3\n", "oom-kill killed KILL", "watchdog dumped ABRT",
		"signal killed RTMIN+3", "resources  ", "success exited 256", "a b", "success exited 0 x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, c, s, ok := ParseExit(line)
		if !ok {
			if r != "" || c != "" || s != "" {
				t.Fatalf("ParseExit(%q) = %q %q %q, not ok, want empty words", line, r, c, s)
			}
			return
		}
		for _, w := range []string{r, c, s} {
			if strings.ContainsFunc(w, func(x rune) bool { return x <= ' ' || x >= 0x7f }) {
				t.Fatalf("ParseExit(%q) word %q has a space or control character", line, w)
			}
		}
		if r2, c2, s2, ok2 := ParseExit(r + " " + c + " " + s); !ok2 || r2 != r || c2 != c || s2 != s {
			t.Fatalf("ParseExit(%q) = %q %q %q, but their record reads %q %q %q %v", line, r, c, s, r2, c2, s2, ok2)
		}
	})
}
