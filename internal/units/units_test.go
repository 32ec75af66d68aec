package units

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func mustLoad(t *testing.T, path string) *Pool {
	t.Helper()
	p, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return p
}

// dump is the golden form of a pool's rendered units.
func dump(files []File) []byte {
	var b bytes.Buffer
	for _, f := range files {
		if f.Link != "" {
			fmt.Fprintf(&b, "=== %s -> %s\n", f.Name, f.Link)
			continue
		}
		fmt.Fprintf(&b, "=== %s\n%s", f.Name, f.Data)
	}
	return b.Bytes()
}

func TestRenderGolden(t *testing.T) {
	files, err := PoolFiles("testdata/pools")
	if err != nil || len(files) == 0 {
		t.Fatalf("PoolFiles: %v %v", files, err)
	}
	for _, f := range files {
		name, _ := NameFromPath(f)
		t.Run(name, func(t *testing.T) {
			p := mustLoad(t, f)
			p.Path = "/etc/corral/pools.d/" + name + ".toml"
			got := dump(Render(p, 4))
			golden := filepath.Join("testdata/golden", name+".units")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./units -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render(%s) differs from %s (go test ./units -update rewrites it):\n--- got\n%s\n--- want\n%s", name, golden, got, want)
			}
		})
	}
}

// TestShippedDemoPool: the pool file the package ships is the one tested.
func TestShippedDemoPool(t *testing.T) {
	shipped, err := os.ReadFile("../../packaging/app.toml")
	if err != nil {
		t.Fatal(err)
	}
	tested, _ := os.ReadFile("testdata/pools/app.toml")
	body := func(b []byte) string { // ignore comment lines
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	if body(shipped) != body(tested) {
		t.Errorf("packaging/app.toml and units/testdata/pools/app.toml differ outside comments:\n%s\n---\n%s", shipped, tested)
	}
}

// analyzer returns systemd-analyze's path; tests that need it fail rather
// than skip, so a machine without it cannot pass silently.
func analyzer(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: apt-get install systemd")
	}
	return p
}

// renderForVerify renders a pool with exec[0] replaced by a binary that
// exists here, as systemd-analyze verify fails on a missing one.
func renderForVerify(t *testing.T, p *Pool, dir string) []string {
	t.Helper()
	p.Exec = append([]string{"/bin/true"}, p.Exec[1:]...)
	if _, err := os.Stat("/usr/bin/corral"); err != nil {
		// verify fails on a missing ExecStopPost binary; the package
		// installs it, this machine may not have it.
		bin := filepath.Join(dir, "corral")
		os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
		defer func() {
			for _, n := range []string{p.Name + "@.service"} {
				b, _ := os.ReadFile(filepath.Join(dir, n))
				os.WriteFile(filepath.Join(dir, n), bytes.ReplaceAll(b, []byte(HintCommand), []byte(bin+" hint")), 0o644)
			}
		}()
	}
	var names []string
	for _, f := range Render(p, 2) {
		if f.Link != "" {
			continue
		}
		if err := WriteFile(dir, f); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Join(dir, f.Name))
	}
	// Instances, so that the template's %i specifiers are checked too.
	names = append(names, filepath.Join(dir, p.Name+"@1.service"), filepath.Join(dir, p.Name+"@2.service"))
	if p.Balance == BalanceReusePort {
		names = append(names, filepath.Join(dir, p.Name+"@1.socket"))
	}
	return names
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := analyzer(t)
	files, _ := PoolFiles("testdata/pools")
	for _, f := range files {
		p := mustLoad(t, f)
		t.Run(p.Name, func(t *testing.T) {
			if p.User != "" {
				p.User, p.Group = "daemon", "daemon" // must exist for verify
			}
			p.Path = "/etc/corral/pools.d/" + p.Name + ".toml"
			dir := t.TempDir()
			names := renderForVerify(t, p, dir)
			// Instances are loaded from the template in the same directory.
			var verify []string
			for _, n := range names {
				if strings.Contains(n, "@.") {
					continue
				}
				verify = append(verify, n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sa, append([]string{"verify", "--man=no"}, verify...)...)
			cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
			out, err := cmd.CombinedOutput()
			// verify exits 0 on unknown keys and bad values: any output fails.
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %v: err=%v, output:\n%s", verify, err, out)
			}
		})
	}
}

// TestDemoSecurity is the hardening bar: the demo pool's instances rate 1.0
// or lower in systemd-analyze security, and a user's default pool (a JIT
// allowed) stays below 2.
func TestDemoSecurity(t *testing.T) {
	analyzer(t)
	ctx := context.Background()
	demo := mustLoad(t, "testdata/pools/app.toml")
	got, err := Exposure(ctx, demo)
	if err != nil {
		t.Fatal(err)
	}
	if got > 1.0 {
		t.Errorf("demo pool exposure = %.1f, want <= 1.0", got)
	}
	t.Logf("demo pool exposure %.1f", got)

	def, err := Parse("/etc/corral/pools.d/web.toml", "web", []byte(`exec = ["/usr/bin/node", "/srv/web/index.js"]
listen = [":3000"]`))
	if err != nil {
		t.Fatal(err)
	}
	got, err = Exposure(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	if got > 2.0 {
		t.Errorf("default pool exposure = %.1f, want <= 2.0", got)
	}
	t.Logf("default pool (JIT allowed) exposure %.1f", got)

	shop := mustLoad(t, "testdata/pools/shop.toml")
	base, ls, each, err := LooseningCosts(ctx, shop)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 4 { // user, W^X (default), network, writable_paths
		t.Errorf("shop loosenings = %v, want 4", ls)
	}
	for i, l := range ls {
		if each[i] < base {
			t.Errorf("loosening %q lowered exposure: %.1f < %.1f", l.Setting, each[i], base)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	p, err := Parse("x.toml", "x", []byte(`exec = ["/bin/x"]
listen = ["127.0.0.1:1"]`))
	if err != nil {
		t.Fatal(err)
	}
	want := Pool{Name: "x", Path: "x.toml", Exec: []string{"/bin/x"}, Listen: []Listen{{Address: "127.0.0.1:1"}},
		Balance: BalanceReusePort, Readiness: ReadinessSimple, StartTimeout: 90 * time.Second, StopTimeout: 30 * time.Second, StartOnBoot: true,
		MaxUnavailable: 1, ReadyDelay: time.Second, WatchdogSignal: "SIGABRT", Steering: true, KeepReleases: 5, Canary: 10 * time.Second,
		Restart: Restart{"on-failure", 0, 5, 10 * time.Second, time.Second, 5 * time.Minute, 5, 5 * time.Minute},
		Sandbox: Sandbox{WriteExecuteMemory: true, Network: NetworkNone, ProtectHome: "yes"}}
	if fmt.Sprintf("%+v", *p) != fmt.Sprintf("%+v", want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *p, want)
	}
	if p.Count(8) != 8 || p.Count(0) != 1 {
		t.Errorf("auto Count(8)=%d Count(0)=%d, want 8 and 1", p.Count(8), p.Count(0))
	}
}

func TestParseErrors(t *testing.T) {
	base := "exec = [\"/bin/x\"]\nlisten = [\"127.0.0.1:1\"]\n"
	rel := "exec = [\"/srv/p/current/x\"]\nlisten = [\":1\"]\nrelease = \"/srv/p/current\"\n" // a pool with a release link
	tests := []struct {
		name, pool, src string
		want            string // substring of the one error
	}{
		{"syntax", "p", "exec = [\n", "p.toml:1:9: invalid TOML: unexpected EOF"},
		{"no exec", "p", `listen = [":1"]`, "p.toml: missing exec"},
		{"no listen", "p", `exec = ["/bin/x"]`, "p.toml: missing listen"},
		{"relative exec", "p", "exec = [\"node\"]\nlisten = [\":1\"]", "p.toml:1:8: exec[0] = \"node\" must be an absolute path; find it with 'command -v node'"},
		{"unclean exec", "p", "exec = [\"/usr//bin/x\"]\nlisten = [\":1\"]", `write "/usr/bin/x"`},
		{"empty exec", "p", "exec = []\nlisten = [\":1\"]", "exec is empty"},
		{"exec type", "p", "exec = \"/bin/x\"\nlisten = [\":1\"]", "p.toml:1:8: exec must be an array of strings"},
		{"exec elem", "p", "exec = [\"/bin/x\", 3]\nlisten = [\":1\"]", "exec[1] must be a string, not a number"},
		{"unknown", "p", base + "instnaces = 3", `p.toml:3:13: unknown key "instnaces" (did you mean "instances"?)`},
		{"unknown table key", "p", base + "[sandbox]\nnetwrok = \"none\"", `unknown key "sandbox.netwrok" (did you mean "sandbox.network"?)`},
		{"instances 0", "p", base + "instances = 0", "instances must be from 1 to 1024, not 0"},
		{"instances big", "p", base + "instances = 5000", "from 1 to 1024"},
		{"instances str", "p", base + "instances = \"4\"", `instances must be "auto" (one per CPU) or a whole number`},
		{"instances float", "p", base + "instances = 2.5", "not a decimal number"},
		{"balance", "p", base + "balance = \"round-robin\"", `balance must be "reuseport"`},
		{"reuseport unix", "p", "exec = [\"/bin/x\"]\nlisten = [\"/run/p.sock\"]\nbalance = \"reuseport\"", "cannot split a unix socket"},
		{"sticky unix", "p", "exec = [\"/bin/x\"]\nlisten = [\"/run/p.sock\"]\nbalance = \"sticky\"", `balance = "sticky" cannot split a unix socket`},
		{"steering", "p", base + "steering = \"yes\"", "p.toml:3:12: steering must be true or false"},
		{"spares negative", "p", base + "spares = -1", "spares must be from 0 to 1023, not -1"},
		{"spares type", "p", base + "spares = \"1\"", "spares must be a whole number"},
		{"spares all", "p", base + "instances = 2\nspares = 2", "p.toml:4:10: spares = 2 counts among instances = 2 and must be fewer, so that one takes connections: raise instances (such as instances = 4 for 2 in rotation)"},
		{"spares shared", "p", base + "balance = \"shared\"\nspares = 1", `spares = 1 needs steering in the kernel, which keeps them out of rotation: it needs balance = "reuseport" or "sticky" and steering on`},
		{"spares no steering", "p", base + "steering = false\nspares = 1", "spares = 1 needs steering in the kernel"},
		{"release not through", "p", base + "release = \"/srv/p/current\"", `p.toml:3:11: release = "/srv/p/current": neither exec nor working_directory goes through it: point them into the link, such as working_directory = "/srv/p/current"`},
		{"release relative", "p", base + "release = \"current\"", `release = "current" is not an absolute path`},
		{"release root", "p", "exec = [\"/bin/x\"]\nlisten = [\":1\"]\nrelease = \"/\"", `release = "/" is the root directory`},
		{"release prefix only", "p", "exec = [\"/srv/p/currently/x\"]\nlisten = [\":1\"]\nrelease = \"/srv/p/current\"", "neither exec nor working_directory goes through it"},
		{"canary without release", "p", base + "canary = \"30s\"", "canary is set but release is not"},
		{"keep_releases", "p", "exec = [\"/srv/p/current/x\"]\nlisten = [\":1\"]\nrelease = \"/srv/p/current\"\nkeep_releases = 1", "keep_releases must be from 2 to 100"},
		{"canary long", "p", "exec = [\"/srv/p/current/x\"]\nlisten = [\":1\"]\nrelease = \"/srv/p/current\"\ncanary = \"2h\"", "canary"},
		{"health", "p", "exec = [\"/srv/p/current/x\"]\nlisten = [\":1\"]\nrelease = \"/srv/p/current\"\nhealth = \"POST /health\"", `p.toml:4:10: health = "POST /health" is not a request: write the method GET or HEAD, one space and a path that starts with / and has no spaces or control characters, such as "GET /health"`},
		{"health no path", "p", "exec = [\"/srv/p/current/x\"]\nlisten = [\":1\"]\nrelease = \"/srv/p/current\"\nhealth = \"GET health\"", "is not a request"},
		{"release unclean", "p", "exec = [\"/srv/p/current/x\"]\nlisten = [\":1\"]\nrelease = \"/srv/p/current/\"", `p.toml:3:11: release = "/srv/p/current/" is not a clean path: write "/srv/p/current"`},
		{"release empty", "p", base + "release = \"\"", "p.toml:3:11: release is empty: give an absolute path"},
		{"release type", "p", base + "release = 1", "p.toml:3:11: release must be an absolute path, not a number"},
		{"release control", "p", base + "release = \"/srv/p/cur\\trent\"", "contains a control character"},
		{"release wd outside", "p", "exec = [\"/bin/x\"]\nlisten = [\":1\"]\nworking_directory = \"/srv/p\"\nrelease = \"/srv/p/current\"", "p.toml:4:11: release = \"/srv/p/current\": neither exec nor working_directory goes through it"},
		{"keep_releases without release", "p", base + "keep_releases = 3", "p.toml:3:17: keep_releases is set but release is not: keep_releases is about deploys of releases through the release link; set release too, or remove keep_releases"},
		{"keep_releases big", "p", rel + "keep_releases = 101", "p.toml:4:17: keep_releases must be from 2 to 100, not 101"},
		{"keep_releases type", "p", rel + "keep_releases = \"5\"", "p.toml:4:17: keep_releases must be a whole number from 2 to 100, not a string"},
		{"keep_releases float", "p", rel + "keep_releases = 5.0", "keep_releases must be a whole number from 2 to 100, not a decimal number"},
		{"canary alone", "p", base + "canary = \"0s\"", "p.toml:3:10: canary is set but release is not: canary is about deploys of releases through the release link; set release too, or remove canary"},
		{"canary range", "p", rel + "canary = \"61m\"", "p.toml:4:10: canary must be from 0s to 1h0m0s, not 1h1m0s"},
		{"canary negative", "p", rel + "canary = \"-1s\"", "canary must be from 0s to 1h0m0s, not -1s"},
		{"canary word", "p", rel + "canary = \"soon\"", `canary = "soon" is not a duration: use a number with a unit, such as "500ms", "30s" or "2m"`},
		{"canary type", "p", rel + "canary = 30", `canary must be a duration string such as "30s" or "1m30s", not a number`},
		{"health without release", "p", base + "health = \"GET /health\"", "p.toml:3:10: health is set but release is not: health is about deploys of releases through the release link; set release too, or remove health"},
		{"health type", "p", rel + "health = 200", `p.toml:4:10: health must be a request such as "GET /health", not a number`},
		{"health lower case", "p", rel + "health = \"get /health\"", `health = "get /health" is not a request`},
		{"health method only", "p", rel + "health = \"GET\"", `health = "GET" is not a request`},
		{"health path only", "p", rel + "health = \"/health\"", `health = "/health" is not a request`},
		{"health two spaces", "p", rel + "health = \"GET  /health\"", `health = "GET  /health" is not a request`},
		{"health tab", "p", rel + "health = \"GET\\t/health\"", `health = "GET\t/health" is not a request`},
		{"health space in path", "p", rel + "health = \"GET /a b\"", `health = "GET /a b" is not a request`},
		{"health trailing space", "p", rel + "health = \"GET /health \"", `health = "GET /health " is not a request`},
		{"health HTTP version", "p", rel + "health = \"GET /health HTTP/1.1\"", "is not a request"},
		{"health control", "p", rel + "health = \"GET /a\\u007f\"", `health = "GET /a\x7f" is not a request`},
		{"health C1 control", "p", rel + "health = \"GET /a\\u0085\"", `health = "GET /a\u0085" is not a request`},
		{"health no-break space", "p", rel + "health = \"GET /a\\u00a0b\"", `health = "GET /a\u00a0b" is not a request`},
		{"readiness", "p", base + "readiness = \"ready\"", `readiness must be "notify"`},
		{"node_preload", "p", base + "node_preload = \"yes\"", "p.toml:3:16: node_preload must be true or false"},
		{"hostname", "p", "exec = [\"/bin/x\"]\nlisten = [\"localhost:80\"]", "systemd does not resolve host names"},
		{"port", "p", "exec = [\"/bin/x\"]\nlisten = [\"127.0.0.1:0\"]", "port must be a number from 1 to 65535"},
		{"no port", "p", "exec = [\"/bin/x\"]\nlisten = [\"127.0.0.1\"]", "not an address"},
		{"dup listen", "p", "exec = [\"/bin/x\"]\nlisten = [\":80\", \":80\"]", "listed twice"},
		{"abstract", "p", "exec = [\"/bin/x\"]\nlisten = [\"@x\"]", "abstract unix sockets are not supported"},
		{"long unix", "p", "exec = [\"/bin/x\"]\nlisten = [\"/" + strings.Repeat("a", 120) + "\"]", "at most 107 bytes"},
		{"root", "p", base + "user = \"root\"", `user = "root" is refused`},
		{"nobody", "p", base + "user = \"nobody\"", "is refused: files it owns are shared"},
		{"bad user", "p", base + "user = \"Bob Smith\"", "is not a valid user name"},
		{"group alone", "p", base + "group = \"www\"", "group is set but user is not"},
		{"group docker", "p", base + "user = \"bob\"\ngroup = \"docker\"", `group = "docker" is refused: its members can start a root container`},
		{"group disk", "p", base + "user = \"bob\"\ngroup = \"disk\"", `group = "disk" is refused`},
		{"group corral", "p", base + "user = \"bob\"\ngroup = \"corral\"", `group = "corral" is refused: its members command every pool`},
		{"group sudo", "p", base + "user = \"bob\"\ngroup = \"sudo\"", `group = "sudo" is refused`},
		{"env reserved", "p", base + "environment = { CORRAL_INSTANCE = \"1\" }", "set by corral or systemd itself"},
		{"env LD_PRELOAD", "p", base + "environment = { LD_PRELOAD = \"/srv/app/x.so\" }", "environment variable LD_PRELOAD changes how the dynamic loader"},
		{"env LD_LIBRARY_PATH", "p", base + "environment = { LD_LIBRARY_PATH = \"/srv/lib\" }", "environment variable LD_LIBRARY_PATH changes how"},
		{"env GCONV_PATH", "p", base + "environment = { GCONV_PATH = \"/srv\" }", "environment variable GCONV_PATH changes how"},
		{"env GLIBC_TUNABLES", "p", base + "environment = { GLIBC_TUNABLES = \"x\" }", "environment variable GLIBC_TUNABLES changes how"},
		{"env name", "p", base + "environment = { \"1X\" = \"1\" }", "may hold only letters"},
		// A trailing backslash continued the unit line into the next setting.
		{"wd backslash", "p", base + "working_directory = '/srv/a\\'", `working_directory = "/srv/a\\" contains a backslash`},
		{"writable backslash", "p", base + "[sandbox]\nwritable_paths = ['/srv/a\\']", `contains a backslash`},
		{"unix backslash", "p", "exec = [\"/bin/x\"]\nlisten = ['/run/x\\']", `may not contain spaces, control characters, % or \`},
		{"env type", "p", base + "environment = { X = [1] }", "environment.X must be a string, not an array"},
		{"env newline", "p", base + "environment = { X = \"a\\nb\" }", "contains a line break"},
		{"env not table", "p", base + "environment = \"X=1\"", "environment must be a table"},
		{"wd relative", "p", base + "working_directory = \"srv\"", "is not an absolute path"},
		{"memory", "p", base + "memory_max = \"lots\"", "is not a size"},
		{"memory small", "p", base + "memory_max = 100", "too small"},
		{"memory small string", "p", base + "memory_max = \"100K\"", `p.toml:3:14: memory_max = "100K" is too small to run anything`},
		{"memory huge", "p", base + "memory_max = \"99999999999T\"", `memory_max = "99999999999T" is too large: use "infinity"`},
		{"memory_high", "p", base + "memory_high = \"lots\"", `p.toml:3:15: memory_high = "lots" is not a size: use bytes with a K, M, G or T suffix`},
		{"memory_high type", "p", base + "memory_high = true", `memory_high must be a size such as "512M", not a boolean`},
		{"memory_high small", "p", base + "memory_high = 1000", "memory_high = 1000 bytes is too small"},
		{"memory_high above max", "p", base + "memory_high = \"1G\"\nmemory_max = \"512M\"", "p.toml:3:15: memory_high (1G) must be below memory_max (512M)"},
		{"memory_high at max", "p", base + "memory_high = \"0.5G\"\nmemory_max = 536870912", "memory_high (0.5G) must be below memory_max (536870912)"},
		{"cpu_quota no %", "p", base + "cpu_quota = \"50\"", `p.toml:3:13: cpu_quota = "50" lacks its percent sign: write "50%"`},
		{"cpu_quota number", "p", base + "cpu_quota = 50", `cpu_quota = 50 is a number: write "50%"`},
		{"cpu_quota decimal", "p", base + "cpu_quota = 0.5", `cpu_quota must be a share of one CPU as a string such as "50%" or "150%", not a decimal number`},
		{"cpu_quota 0", "p", base + "cpu_quota = \"0%\"", `cpu_quota must be from 1% to 100000%, not "0%"; remove cpu_quota for no limit`},
		{"cpu_quota 0.5", "p", base + "cpu_quota = \"0.5%\"", `cpu_quota must be from 1% to 100000%, not "0.5%"`},
		{"cpu_quota big", "p", base + "cpu_quota = \"100000.1%\"", `cpu_quota must be from 1% to 100000%`},
		{"cpu_quota huge", "p", base + "cpu_quota = \"99999999999999999999%\"", `cpu_quota must be from 1% to 100000%`},
		{"cpu_quota two decimals", "p", base + "cpu_quota = \"12.34%\"", `cpu_quota = "12.34%" is not a percentage: write a share of one CPU with at most one decimal`},
		{"cpu_quota word", "p", base + "cpu_quota = \"half\"", `cpu_quota = "half" is not a percentage`},
		{"cpu_weight", "p", base + "cpu_weight = 0", "p.toml:3:14: cpu_weight must be from 1 to 10000, not 0"},
		{"cpu_weight type", "p", base + "cpu_weight = \"100\"", "cpu_weight must be a whole number from 1 to 10000, not a string"},
		{"tasks_max 0", "p", base + "tasks_max = 0", "tasks_max must be from 1 to 4194304, not 0"},
		{"tasks_max word", "p", base + "tasks_max = \"lots\"", `tasks_max must be "infinity" (no limit) or a whole number from 1 to 4194304, not "lots"`},
		{"tasks_max quoted", "p", base + "tasks_max = \"512\"", `not "512": write tasks_max = 512, without quotes`},
		{"tasks_max type", "p", base + "tasks_max = 1.5", "tasks_max must be \"infinity\" (no limit) or a whole number from 1 to 4194304, not a decimal number"},
		{"watchdog", "p", base + "watchdog = \"500ms\"", "p.toml:3:12: watchdog must be from 1s to 10m0s, not 500ms"},
		{"watchdog long", "p", base + "watchdog = \"11m\"", "watchdog must be from 1s to 10m0s, not 11m0s"},
		{"watchdog type", "p", base + "watchdog = 10", `watchdog must be a duration string such as "30s"`},
		{"watchdog_signal", "p", base + "watchdog = \"10s\"\nwatchdog_signal = \"ABRT\"", `watchdog_signal must be "SIGABRT" (Go workers print every goroutine's stack), "SIGKILL" or "SIGTERM", not "ABRT"`},
		{"watchdog_signal alone", "p", base + "watchdog_signal = \"SIGKILL\"", "p.toml:3:19: watchdog_signal is set but watchdog is not: watchdog_signal is the signal that ends an instance whose watchdog fires; set watchdog too, or remove watchdog_signal"},
		{"watchdog_signal bad watchdog", "p", base + "watchdog = \"0s\"\nwatchdog_signal = \"SIGKILL\"", "watchdog must be from 1s"},
		{"recycle_after", "p", base + "recycle_after = \"5s\"", "recycle_after must be from 10s to 8760h0m0s, not 5s"},
		{"recycle_after long", "p", base + "recycle_after = \"8761h\"", "recycle_after must be from 10s to 8760h0m0s"},
		{"recycle_jitter alone", "p", base + "recycle_jitter = \"1m\"", "recycle_jitter is set but recycle_after is not: recycle_jitter is a spread of the age at which instances are recycled; set recycle_after too, or remove recycle_jitter"},
		{"recycle_jitter long", "p", base + "recycle_after = \"1h\"\nrecycle_jitter = \"2h\"", "p.toml:4:18: recycle_jitter (2h0m0s) is longer than recycle_after (1h0m0s): make it at most as long"},
		{"recycle_jitter bad after", "p", base + "recycle_after = \"1s\"\nrecycle_jitter = \"2h\"", "recycle_after must be from 10s"},
		{"recycle_jitter type", "p", base + "recycle_after = \"1h\"\nrecycle_jitter = 5", "recycle_jitter must be a duration string"},
		{"stop timeout", "p", base + "stop_timeout = \"30\"", "is not a duration"},
		{"stop timeout type", "p", base + "stop_timeout = 30", `must be a duration string such as "30s"`},
		{"stop timeout range", "p", base + "stop_timeout = \"2h\"", "must be from 1s to 1h0m0s"},
		{"health shared", "p", base + "release = \"/srv/p/current\"\nworking_directory = \"/srv/p/current\"\nhealth = \"GET /h\"\nbalance = \"shared\"", `health = "GET /h" needs steering in the kernel`},
		{"health no steering", "p", base + "release = \"/srv/p/current\"\nworking_directory = \"/srv/p/current\"\nhealth = \"GET /h\"\nsteering = false", `health = "GET /h" needs steering in the kernel`},
		{"start timeout range", "p", base + "start_timeout = \"0s\"", "start_timeout must be from 1s to 1h0m0s"},
		{"boot", "p", base + "start_on_boot = \"yes\"", "start_on_boot must be true or false, not a string"},
		{"restart policy", "p", base + "[restart]\npolicy = \"sometimes\"", `restart.policy must be "on-failure"`},
		{"restart burst", "p", base + "[restart]\nburst = 0", "restart.burst must be from 1 to 1000"},
		{"backoff order", "p", base + "[restart]\nbackoff = \"10s\"\nbackoff_max = \"1s\"", "is shorter than restart.backoff"},
		{"loop window", "p", base + "[restart]\ncrash_loop_window = 5", "restart.crash_loop_window must be a duration string"},
		{"max unavailable", "p", base + "max_unavailable = 0", "max_unavailable must be from 1 to 1024"},
		{"ready delay", "p", base + "ready_delay = \"forever\"", "is not a duration"},
		{"restart table", "p", base + "restart = \"always\"", "restart must be a table"},
		{"network", "p", base + "[sandbox]\nnetwork = \"all\"", `sandbox.network must be "none"`},
		{"writable", "p", base + "[sandbox]\nwritable_paths = [\"var/lib\"]", "is not an absolute path"},
		{"protect home", "p", base + "[sandbox]\nprotect_home = \"maybe\"", `sandbox.protect_home must be "yes"`},
		{"pool name", "bad name", base, `bad pool name "bad name": a pool name has only letters`},
		{"pool name unit", "x.service", base, "ends in a unit type"},
		{"pool name long", strings.Repeat("a", 65), base, "longer than 64 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.pool+".toml", tt.pool, []byte(tt.src))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse(%q) = %v, want Errors", tt.src, err)
			}
			if len(es) != 1 {
				t.Errorf("Parse(%q) gave %d errors, want 1:\n%v", tt.src, len(es), es)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error:\n got %v\nwant it to contain %q", tt.src, err, tt.want)
			}
		})
	}
}

func TestParseCollectsEveryError(t *testing.T) {
	src := "exec = [\"node\"]\nlisten = [\"localhost:1\"]\ninstances = -1\nbogus = 1\n"
	_, err := Parse("p.toml", "p", []byte(src))
	var es Errors
	if !errors.As(err, &es) || len(es) != 4 {
		t.Fatalf("want 4 errors, got %v", err)
	}
	for _, e := range es {
		if e.Line == 0 {
			t.Errorf("error without a position: %v", e)
		}
	}
}

func TestProtectHomeDefault(t *testing.T) {
	p := mustLoad(t, "testdata/pools/sock.toml")
	if p.Sandbox.ProtectHome != "read-only" || p.Balance != BalanceShared {
		t.Errorf("sock pool: ProtectHome=%q Balance=%q, want read-only and shared", p.Sandbox.ProtectHome, p.Balance)
	}
}

func TestListenOverlaps(t *testing.T) {
	l := func(a string) Listen {
		x, msg := parseListen(a)
		if msg != "" {
			t.Fatal(msg)
		}
		return x
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"0.0.0.0:80", "127.0.0.1:80", true},
		{":80", "[::1]:80", true},
		{"[::]:80", "127.0.0.1:80", true},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"127.0.0.1:80", "127.0.0.1:81", false},
		{"/run/a.sock", "/run/a.sock", true},
		{"/run/a.sock", "/run/b.sock", false},
		{"/run/a.sock", ":80", false},
	}
	for _, tt := range tests {
		if got := l(tt.a).Overlaps(l(tt.b)); got != tt.want {
			t.Errorf("%s overlaps %s = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// fakeHost is a Host over a map of files.
type fakeFile struct {
	mode fs.FileMode
	dir  bool
}

func (f fakeFile) Name() string       { return "" }
func (f fakeFile) Size() int64        { return 0 }
func (f fakeFile) Mode() fs.FileMode  { return f.mode }
func (f fakeFile) ModTime() time.Time { return time.Time{} }
func (f fakeFile) IsDir() bool        { return f.dir }
func (f fakeFile) Sys() any           { return nil }

func fakeHost(files map[string]fakeFile, users ...string) Host {
	return Host{
		UnitDirs: []string{"/lib/systemd/system"},
		LookupUser: func(n string) (int, error) {
			for i, u := range users {
				if u == n {
					if u == "root" || u == "toor" {
						return 0, nil
					}
					return 1000 + i, nil
				}
			}
			return 0, errors.New("no such user")
		},
		LookupGroup: func(n string) (int, error) {
			switch n {
			case "root", "wheel0":
				return 0, nil
			case "www", "users":
				return 100, nil
			}
			return 0, errors.New("no such group")
		},
		Stat: func(n string) (fs.FileInfo, error) {
			if f, ok := files[n]; ok {
				return f, nil
			}
			switch n {
			case "/usr", "/srv", "/home", "/bin":
				return fakeFile{mode: 0o755, dir: true}, nil
			}
			return nil, fs.ErrNotExist
		},
	}
}

func TestHostCheck(t *testing.T) {
	dirs := map[string]fakeFile{"/usr/bin": {0o755, true}, "/srv/a": {0o755, true}, "/home/bob": {0o700, true}, "/home/bob/app": {0o755, true}}
	with := func(extra map[string]fakeFile) map[string]fakeFile {
		m := map[string]fakeFile{}
		for k, v := range dirs {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name  string
		src   string
		files map[string]fakeFile
		users []string
		want  string // "" = no problem
	}{
		{"ok", `exec = ["/usr/bin/x", "/srv/a/s.js"]`, with(map[string]fakeFile{"/usr/bin/x": {0o755, false}, "/srv/a/s.js": {0o644, false}}), nil, ""},
		{"missing", `exec = ["/usr/bin/x"]`, with(nil), nil, "exec[0] /usr/bin/x does not exist: install it or fix the path"},
		{"not exec", `exec = ["/usr/bin/x"]`, with(map[string]fakeFile{"/usr/bin/x": {0o644, false}}), nil, "is not executable: chmod +x"},
		{"dir", `exec = ["/usr/bin"]`, with(nil), nil, "is a directory"},
		{"others", `exec = ["/usr/bin/x"]`, with(map[string]fakeFile{"/usr/bin/x": {0o750, false}}), nil, "not executable by others"},
		{"others ok with user", "exec = [\"/usr/bin/x\"]\nuser = \"bob\"", with(map[string]fakeFile{"/usr/bin/x": {0o750, false}}), []string{"bob"}, ""},
		{"no user", "exec = [\"/usr/bin/x\"]\nuser = \"bob\"", with(map[string]fakeFile{"/usr/bin/x": {0o755, false}}), nil, `user "bob" does not exist`},
		{"no group", "exec = [\"/usr/bin/x\"]\nuser = \"bob\"\ngroup = \"nope\"", with(map[string]fakeFile{"/usr/bin/x": {0o755, false}}), []string{"bob"}, `group "nope" does not exist`},
		{"group ok", "exec = [\"/usr/bin/x\"]\nuser = \"bob\"\ngroup = \"www\"", with(map[string]fakeFile{"/usr/bin/x": {0o755, false}}), []string{"bob"}, ""},
		{"hidden home", `exec = ["/usr/bin/x", "/home/bob/app/s.js"]`, with(map[string]fakeFile{"/usr/bin/x": {0o755, false}, "/home/bob/app/s.js": {0o644, false}}), nil, "inside /home/bob, which others cannot enter"},
		{"unreadable script", `exec = ["/usr/bin/x", "/srv/a/s.js"]`, with(map[string]fakeFile{"/usr/bin/x": {0o755, false}, "/srv/a/s.js": {0o600, false}}), nil, "exec[1] /srv/a/s.js is not readable by others"},
		{"writable with dynamic user", "exec = [\"/usr/bin/x\"]\n[sandbox]\nwritable_paths = [\"/srv/a\"]", with(map[string]fakeFile{"/usr/bin/x": {0o755, false}}), nil, "sandbox.writable_paths /srv/a with a dynamic user"},
		{"writable with user", "exec = [\"/usr/bin/x\"]\nuser = \"bob\"\n[sandbox]\nwritable_paths = [\"/srv/a\"]", with(map[string]fakeFile{"/usr/bin/x": {0o755, false}}), []string{"bob"}, ""},
		{"wd missing", "exec = [\"/usr/bin/x\"]\nworking_directory = \"/srv/b\"", with(map[string]fakeFile{"/usr/bin/x": {0o755, false}}), nil, "working_directory /srv/b does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.toml", "p", []byte("listen = [\":1\"]\n"+tt.src))
			if err != nil {
				t.Fatal(err)
			}
			errs := fakeHost(tt.files, tt.users...).Check(p)
			got := errs.Error()
			if tt.want == "" && len(errs) > 0 || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("Check:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestShadows(t *testing.T) {
	h := fakeHost(map[string]fakeFile{"/lib/systemd/system/ssh.socket": {0o644, false}},
		"root", "postgres", "nobody", "corral-taken", "toor", "bob")
	for name, want := range map[string]string{
		"ssh":     "would shadow /lib/systemd/system/ssh.socket",
		"corral":  "reserved",
		"sockets": "reserved",
		"shop":    "",
		// Accounts named like a pool are no matter: its dynamic user is corral-NAME.
		"root":     "",
		"postgres": "",
		"nobody":   "",
		// Root under another name.
		"toorpool":  `user "toor" is uid 0, root under another name`,
		"wheelpool": `group "wheel0" is gid 0`,
		// An account named like the dynamic user would be used by systemd.
		"taken": `would run as a dynamic user named corral-taken, but an account of that name exists`,
	} {
		p := &Pool{Name: name, Path: name + ".toml"}
		switch name {
		case "toorpool":
			p.User = "toor"
		case "wheelpool":
			p.User, p.Group = "bob", "wheel0"
		}
		e := h.Shadows(p)
		if want == "" && e != nil || want != "" && (e == nil || !strings.Contains(e.Error(), want)) {
			t.Errorf("Shadows(%s) = %v, want %q", name, e, want)
		}
	}
}

// TestGenerate: a broken pool, a shadowing pool and a pool using another's
// address get no units; the good pools get theirs.
func TestGenerate(t *testing.T) {
	src := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(src, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good.toml", "exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:7001\"]\ninstances = 3\n")
	write("broken.toml", "exec = [\"/bin/true\"\nlisten = [\":7002\"]\n")
	write("ssh.toml", "exec = [\"/bin/true\"]\nlisten = [\":7003\"]\n")
	write("thief.toml", "exec = [\"/bin/true\"]\nlisten = [\"0.0.0.0:7001\"]\n")
	write("late.toml", "exec = [\"/nonexistent/bin\"]\nlisten = [\"/run/late.sock\"]\nstart_on_boot = false\n")
	write(".hidden.toml", "garbage")
	write("notes.txt", "garbage")
	write("good.toml~", "garbage")
	out := t.TempDir()
	h := fakeHost(map[string]fakeFile{"/lib/systemd/system/ssh.socket": {0o644, false}, "/bin/true": {0o755, false}})
	files, err := PoolFiles(src)
	if err != nil {
		t.Fatal(err)
	}
	skipped, warnings, err := Generate(files, out, 2, h)
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 3 || !strings.Contains(skipped.Error(), "broken.toml:2:21: invalid TOML") ||
		!strings.Contains(skipped.Error(), "would shadow") || !strings.Contains(skipped.Error(), `overlaps 127.0.0.1:7001 of pool "good"`) {
		t.Errorf("skipped:\n%v", skipped)
	}
	if len(warnings) != 1 || !strings.Contains(warnings.Error(), "/nonexistent/bin does not exist") {
		t.Errorf("warnings:\n%v", warnings)
	}
	var got []string
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if !d.IsDir() {
			r, _ := filepath.Rel(out, p)
			got = append(got, r)
		}
		return nil
	})
	want := "good.target good@.service good@.socket late.socket late.target late@.service multi-user.target.wants/good.target"
	if strings.Join(got, " ") != want {
		t.Errorf("generated:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if l, err := os.Readlink(filepath.Join(out, "multi-user.target.wants/good.target")); err != nil || l != "../good.target" {
		t.Errorf("boot link = %q, %v", l, err)
	}
	target, _ := os.ReadFile(filepath.Join(out, "good.target"))
	if !strings.Contains(string(target), "Wants=good@1.service good@2.service good@3.service") {
		t.Errorf("good.target:\n%s", target)
	}
}

func TestLocator(t *testing.T) {
	src := "# c\nexec = [\"x\"]\n[sandbox]\n  network = \"x\"\n[restart]\n\"policy\" = 1\n"
	l := newLocator([]byte(src))
	for key, want := range map[string][2]int{"exec": {2, 8}, "sandbox.network": {4, 13}, "restart.policy": {6, 12}, "nope": {0, 0}} {
		line, col := l.find(key)
		if line != want[0] || col != want[1] {
			t.Errorf("find(%q) = %d:%d, want %d:%d", key, line, col, want[0], want[1])
		}
	}
}

// TestDynamicUserName: the worker's dynamic user is never the bare pool name
// (a pool named root would run as root), always a valid systemd user name,
// and distinct for distinct pools.
func TestDynamicUserName(t *testing.T) {
	for pool, want := range map[string]string{
		"app":                 "corral-app",
		"root":                "corral-root",
		"www-data":            "corral-www-data",
		"a_b":                 "corral-a_b",
		"shop-api-v2-eu-west": "corral-shop-api-v2-eu-west",
	} {
		if got := DynamicUserName(pool); got != want {
			t.Errorf("DynamicUserName(%q) = %q, want %q", pool, got, want)
		}
	}
	seen := map[string]string{}
	for _, pool := range []string{"App", "app.v2", "app.v3", "0day", "a-very-long-pool-name-of-30-chars", strings.Repeat("x", 64), "app"} {
		u := DynamicUserName(pool)
		if !dynUserRE.MatchString(u) || !strings.HasPrefix(u, "corral-") {
			t.Errorf("DynamicUserName(%q) = %q: not a valid corral-… user name", pool, u)
		}
		if o, ok := seen[u]; ok {
			t.Errorf("pools %q and %q share the user %q", o, pool, u)
		}
		seen[u] = pool
	}
}

// TestWritablePathsDollar: ReadWritePaths= expands no $ variables, so a $ in
// a path is written as it is (it was doubled, naming another path).
func TestWritablePathsDollar(t *testing.T) {
	p, err := Parse("p.toml", "p", []byte("exec = [\"/bin/x\"]\nlisten = [\"127.0.0.1:1\"]\n[sandbox]\nwritable_paths = [\"/srv/a$b\", \"/srv/100%\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range Hardening(p) {
		if kv.Key == "ReadWritePaths" {
			if want := `"/srv/a$b" "/srv/100%%"`; kv.Value != want {
				t.Errorf("ReadWritePaths=%s, want %s", kv.Value, want)
			}
			return
		}
	}
	t.Error("no ReadWritePaths=")
}

// TestNodePreload: on by default when exec is node (by any of its names),
// off otherwise, as the pool file says when set; the pool's own
// NODE_OPTIONS follows the preload's --require.
func TestNodePreload(t *testing.T) {
	for _, tc := range []struct {
		exec, extra string
		want        string // NODE_OPTIONS in the service, "" for none
	}{
		{"/usr/bin/node", "", "--require=" + NodePreloadPath},
		{"/usr/local/bin/nodejs", "", "--require=" + NodePreloadPath},
		{"/opt/node-v20/bin/node20", "", "--require=" + NodePreloadPath},
		{"/usr/bin/node", "node_preload = false", ""},
		{"/usr/bin/python3", "", ""},
		{"/usr/bin/nodemon", "", ""},
		{"/usr/local/bin/run-node-app", "node_preload = true", "--require=" + NodePreloadPath},
		{"/usr/bin/node", "environment = { NODE_OPTIONS = \"--max-old-space-size=512\" }", "--require=" + NodePreloadPath + " --max-old-space-size=512"},
		{"/usr/bin/node", "node_preload = false\nenvironment = { NODE_OPTIONS = \"--max-old-space-size=512\" }", "--max-old-space-size=512"},
	} {
		src := fmt.Sprintf("exec = [%q, \"/srv/app.js\"]\nlisten = [\"127.0.0.1:1\", \"[::1]:1\"]\n%s\n", tc.exec, tc.extra)
		p, err := Parse("p.toml", "p", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		var got string
		service := string(renderService(p))
		for _, line := range strings.Split(service, "\n") {
			if v, ok := strings.CutPrefix(line, `Environment="NODE_OPTIONS=`); ok {
				got = strings.TrimSuffix(v, `"`)
			}
		}
		if got != tc.want || p.NodePreload != (strings.Contains(tc.want, "--require")) {
			t.Errorf("%s %s: NODE_OPTIONS=%q (NodePreload %v), want %q", tc.exec, tc.extra, got, p.NodePreload, tc.want)
		}
		if !strings.Contains(service, `Environment="CORRAL_LISTEN=127.0.0.1:1 [::1]:1"`) {
			t.Errorf("no CORRAL_LISTEN in:\n%s", service)
		}
	}
}

// TestSickKeys: the keys of sick instances reach the Pool, with the bytes of
// absolute sizes and recycle_jitter's default of a tenth of recycle_after.
func TestSickKeys(t *testing.T) {
	base := "exec = [\"/bin/x\"]\nlisten = [\"127.0.0.1:1\"]\n"
	for _, tc := range []struct {
		src  string
		want func(*Pool) bool
	}{
		{`memory_high = "1.5G"` + "\n" + `memory_max = "2G"`, func(p *Pool) bool {
			return p.MemoryHigh == "1.5G" && p.MemoryHighBytes == 3<<29 && p.MemoryMax == "2G" && p.MemoryMaxBytes == 2<<30
		}},
		{`memory_high = 1048576` + "\n" + `memory_max = "50%"`, func(p *Pool) bool {
			return p.MemoryHigh == "1048576" && p.MemoryHighBytes == 1<<20 && p.MemoryMax == "50%" && p.MemoryMaxBytes == 0
		}},
		{`memory_high = "90%"` + "\n" + `memory_max = "1M"`, func(p *Pool) bool { // a share is not compared
			return p.MemoryHighBytes == 0 && p.MemoryMaxBytes == 1<<20
		}},
		{`memory_high = "infinity"`, func(p *Pool) bool { return p.MemoryHigh == "infinity" && p.MemoryHighBytes == 0 }},
		{`memory_max = "1536K"`, func(p *Pool) bool { return p.MemoryMaxBytes == 1536<<10 }},
		{`memory_max = "0.0001T"`, func(p *Pool) bool { return p.MemoryMaxBytes == 109951162 }}, // rounded down
		{`cpu_quota = "50%"`, func(p *Pool) bool { return p.CPUQuota == "50%" }},
		{`cpu_quota = "050.0%"`, func(p *Pool) bool { return p.CPUQuota == "50.0%" }},
		{`cpu_quota = "1%"`, func(p *Pool) bool { return p.CPUQuota == "1%" }},
		{`cpu_quota = "100000%"`, func(p *Pool) bool { return p.CPUQuota == "100000%" }},
		{`cpu_weight = 10000`, func(p *Pool) bool { return p.CPUWeight == 10000 }},
		{`tasks_max = "infinity"`, func(p *Pool) bool { return p.TasksMax == "infinity" }},
		{`tasks_max = 4194304`, func(p *Pool) bool { return p.TasksMax == "4194304" }},
		{`watchdog = "10s"`, func(p *Pool) bool { return p.Watchdog == 10*time.Second && p.WatchdogSignal == "SIGABRT" }},
		{`watchdog = "10m"` + "\n" + `watchdog_signal = "SIGTERM"`, func(p *Pool) bool { return p.Watchdog == 10*time.Minute && p.WatchdogSignal == "SIGTERM" }},
		{`recycle_after = "24h"`, func(p *Pool) bool { return p.RecycleAfter == 24*time.Hour && p.RecycleJitter == 144*time.Minute }},
		{`recycle_after = "10s"` + "\n" + `recycle_jitter = "0s"`, func(p *Pool) bool { return p.RecycleAfter == 10*time.Second && p.RecycleJitter == 0 }},
		{`recycle_after = "1h"` + "\n" + `recycle_jitter = "1h"`, func(p *Pool) bool { return p.RecycleJitter == time.Hour }},
		{``, func(p *Pool) bool {
			return p.RecycleAfter == 0 && p.RecycleJitter == 0 && p.Watchdog == 0 && p.CPUQuota == "" && p.TasksMax == "" && p.MemoryHigh == ""
		}},
	} {
		p, err := Parse("p.toml", "p", []byte(base+tc.src))
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if !tc.want(p) {
			t.Errorf("%s: parsed %+v", tc.src, *p)
		}
	}
}

// TestWatchdogRender: PID 1 enforces the watchdog of a notify worker
// (WatchdogSec=, WatchdogSignal=); a simple worker gets no WatchdogSec=, as
// it never sends WATCHDOG=1. Both get CORRAL_WATCHDOG, for the worker and
// corrald.
func TestWatchdogRender(t *testing.T) {
	for _, tc := range []struct {
		extra    string
		want     []string
		wantNone []string
	}{
		{"readiness = \"notify\"\nwatchdog = \"1m30s\"\nwatchdog_signal = \"SIGKILL\"",
			[]string{"\nWatchdogSec=90s\n", "\nWatchdogSignal=SIGKILL\n", ` "CORRAL_WATCHDOG=1m30s"` + "\n"}, nil},
		{"readiness = \"notify\"\nwatchdog = \"1500ms\"",
			[]string{"\nWatchdogSec=1500ms\n", "\nWatchdogSignal=SIGABRT\n", ` "CORRAL_WATCHDOG=1.5s"` + "\n"}, nil},
		{"watchdog = \"10s\"", []string{` "CORRAL_WATCHDOG=10s"` + "\n"}, []string{"WatchdogSec=", "WatchdogSignal="}},
		{"readiness = \"notify\"", nil, []string{"WatchdogSec=", "WatchdogSignal=", "CORRAL_WATCHDOG"}},
	} {
		p, err := Parse("p.toml", "p", []byte("exec = [\"/bin/x\"]\nlisten = [\"127.0.0.1:1\"]\n"+tc.extra))
		if err != nil {
			t.Fatal(err)
		}
		service := string(renderService(p))
		for _, w := range tc.want {
			if !strings.Contains(service, w) {
				t.Errorf("%s: no %q in\n%s", tc.extra, w, service)
			}
		}
		for _, w := range tc.wantNone {
			if strings.Contains(service, w) {
				t.Errorf("%s: %q in\n%s", tc.extra, w, service)
			}
		}
	}
}

// TestParseRelease: the keys of deploys, with a release link that exec[0],
// an exec argument or working_directory goes through, their defaults and
// their bounds.
func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      func(*Pool) bool
	}{
		{"every key", `exec = ["/usr/bin/node", "/srv/shop/current/index.js"]
release = "/srv/shop/current"
keep_releases = 3
canary = "30s"
health = "HEAD /health?deep=1"`, func(p *Pool) bool {
			return p.Release == "/srv/shop/current" && p.KeepReleases == 3 && p.Canary == 30*time.Second &&
				p.Health == "HEAD /health?deep=1" && p.HealthMethod == "HEAD" && p.HealthPath == "/health?deep=1"
		}},
		{"defaults, through working_directory", `exec = ["/usr/bin/app"]
working_directory = "/srv/shop/current"
release = "/srv/shop/current"`, func(p *Pool) bool {
			return p.Release == "/srv/shop/current" && p.KeepReleases == 5 && p.Canary == 10*time.Second &&
				p.Health == "" && p.HealthMethod == "" && p.HealthPath == ""
		}},
		{"under working_directory", `exec = ["/usr/bin/app"]
working_directory = "/srv/shop/current/web"
release = "/srv/shop/current"`, func(p *Pool) bool { return p.Release == "/srv/shop/current" }},
		{"through exec[0]", `exec = ["/srv/shop/current/bin/shop", "--port", "3000"]
release = "/srv/shop/current"`, func(p *Pool) bool { return p.Release == "/srv/shop/current" }},
		{"exec[0] is the link", `exec = ["/srv/shop/current"]
release = "/srv/shop/current"`, func(p *Pool) bool { return p.Release == "/srv/shop/current" }},
		{"through a later exec argument", `exec = ["/usr/bin/python3", "-m", "gunicorn", "--chdir", "/srv/shop/current", "app:app"]
release = "/srv/shop/current"`, func(p *Pool) bool { return p.Release == "/srv/shop/current" }},
		{"bounds", `exec = ["/srv/shop/current/x"]
release = "/srv/shop/current"
keep_releases = 2
canary = "0s"
health = "GET /"`, func(p *Pool) bool {
			return p.KeepReleases == 2 && p.Canary == 0 && p.HealthMethod == "GET" && p.HealthPath == "/"
		}},
		{"upper bounds", `exec = ["/srv/shop/current/x"]
release = "/srv/shop/current"
keep_releases = 100
canary = "1h"
health = "GET /health/ready?full=1&x=%20"`, func(p *Pool) bool {
			return p.KeepReleases == 100 && p.Canary == time.Hour && p.HealthPath == "/health/ready?full=1&x=%20"
		}},
		{"no release", `exec = ["/srv/shop/current/x"]`, func(p *Pool) bool {
			return p.Release == "" && p.KeepReleases == 5 && p.Canary == 10*time.Second && p.Health == ""
		}},
	} {
		p, err := Parse("shop.toml", "shop", []byte("listen = [\"0.0.0.0:8080\"]\n"+tc.src+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !tc.want(p) {
			t.Errorf("%s: parsed %+v", tc.name, *p)
		}
	}
}

// TestReleaseRendersNothing: the keys of deploys are corrald's alone;
// they change no unit the generator writes.
func TestReleaseRendersNothing(t *testing.T) {
	base := "exec = [\"/usr/bin/node\", \"/srv/shop/current/index.js\"]\nlisten = [\"0.0.0.0:8080\"]\nworking_directory = \"/srv/shop/current\"\n"
	without, err := Parse("shop.toml", "shop", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	with, err := Parse("shop.toml", "shop", []byte(base+"release = \"/srv/shop/current\"\nkeep_releases = 7\ncanary = \"45s\"\nhealth = \"GET /health\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := Render(without, 4), Render(with, 4)
	if len(a) != len(b) {
		t.Fatalf("%d units without the keys of deploys, %d with them", len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Link != b[i].Link || !bytes.Equal(a[i].Data, b[i].Data) {
			t.Errorf("%s differs with the keys of deploys:\n--- without\n%s\n--- with\n%s", b[i].Name, a[i].Data, b[i].Data)
		}
	}
}

// TestInRotation: the spares leave the others in rotation, and never
// none.
func TestInRotation(t *testing.T) {
	for _, tc := range []struct{ count, spares, want int }{{3, 1, 2}, {4, 0, 4}, {1, 1, 1}, {2, 5, 1}} {
		if got := InRotation(tc.count, tc.spares); got != tc.want {
			t.Errorf("InRotation(%d, %d) = %d, want %d", tc.count, tc.spares, got, tc.want)
		}
	}
}
