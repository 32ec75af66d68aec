package cli

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-pool/corral/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\nwant:\n%s\ngot:\n%s", path, want, got)
	}
}

func TestListAndStatusGolden(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		golden string
	}{
		{[]string{"list"}, "list.txt"},
		{[]string{"ls", "--json"}, "list.json"},
		{[]string{"status", "web"}, "status-web.txt"},
		{[]string{"status", "app", "--json"}, "status-app.json"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			env, out, errb := testEnv(newFake(), nil)
			if code, e := runEnv(t, context.Background(), env, tt.args...); code != ExitOK {
				t.Fatalf("exit %d: %s %s", code, e, errb)
			}
			golden(t, tt.golden, out.String())
			if strings.HasSuffix(tt.golden, ".json") && !json.Valid(out.Bytes()) {
				t.Errorf("invalid JSON:\n%s", out)
			}
		})
	}
}

// TestListJSONSchema checks the documented keys and that unknown counters
// are null, not 0.
func TestListJSONSchema(t *testing.T) {
	env, out, _ := testEnv(newFake(), nil)
	if code, e := runEnv(t, context.Background(), env, "list", "--json"); code != ExitOK {
		t.Fatal(e)
	}
	var doc struct {
		Pools []map[string]any `json:"pools"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Pools) != 2 {
		t.Fatalf("got %d pools, want 2", len(doc.Pools))
	}
	for _, k := range []string{"name", "state", "desired", "running", "balance", "file", "listen", "instances"} {
		if _, ok := doc.Pools[0][k]; !ok {
			t.Errorf("pool lacks key %q", k)
		}
	}
	app2 := doc.Pools[0]["instances"].([]any)[1].(map[string]any)
	for k, want := range map[string]any{"name": "app@2", "memory_bytes": nil, "cpu_nsec": nil, "pid": float64(1202), "uptime_seconds": float64(45)} {
		if got, ok := app2[k]; !ok || got != want {
			t.Errorf("app@2 %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	web2 := doc.Pools[1]["instances"].([]any)[1].(map[string]any)
	for _, k := range []string{"pid", "uptime_seconds", "memory_bytes"} {
		if web2[k] != nil {
			t.Errorf("web@2 %s = %v, want null", k, web2[k])
		}
	}
}

func TestListEmpty(t *testing.T) {
	f := newFake()
	f.pools = nil
	for _, tt := range []struct{ args, want string }{
		{"list", "no pools: add a pool file to /etc/corral/pools.d"},
		{"list --json", "{\n  \"pools\": []\n}\n"},
	} {
		env, out, _ := testEnv(f, nil)
		if code, e := runEnv(t, context.Background(), env, strings.Fields(tt.args)...); code != ExitOK || !strings.Contains(out.String(), tt.want) {
			t.Errorf("corral %s: exit %d %s, output %q; want %q", tt.args, code, e, out, tt.want)
		}
	}
}

// TestListCalls: one ListPools and one ListInstances per pool, and the
// client is closed.
func TestListCalls(t *testing.T) {
	f := newFake()
	env, _, _ := testEnv(f, nil)
	if code, e := runEnv(t, context.Background(), env, "list"); code != ExitOK {
		t.Fatal(e)
	}
	want := "ListPools|ListInstances app|ListInstances web"
	if got := strings.Join(f.calls, "|"); got != want || !f.closed {
		t.Errorf("calls %q (closed %v), want %q (closed)", got, f.closed, want)
	}
}

// TestListTerminal: crash-loops are highlighted on a terminal without
// moving the columns; nothing is highlighted otherwise.
func TestListTerminal(t *testing.T) {
	plainEnv, plain, _ := testEnv(newFake(), nil)
	runEnv(t, context.Background(), plainEnv, "list")
	env, out, _ := testEnv(newFake(), nil)
	env.IsTerminal = true
	runEnv(t, context.Background(), env, "list")
	if strings.Contains(plain.String(), "\x1b") {
		t.Errorf("escape codes in plain output:\n%q", plain)
	}
	if got := strings.Count(out.String(), ansiAlert+"crash-loop"+ansiReset); got != 2 {
		t.Errorf("%d highlighted crash-loops, want 2:\n%q", got, out)
	}
	stripped := strings.NewReplacer(ansiAlert, "", ansiReset, "").Replace(out.String())
	if stripped != plain.String() {
		t.Errorf("highlighting moved the columns:\nwant:\n%s\ngot:\n%s", plain, stripped)
	}
}

func TestStatus(t *testing.T) {
	for _, tt := range []struct {
		name   string
		args   []string
		mutate func(*fakeAPI)
		code   int
		want   string
	}{
		{"no crash-loop, no hint", []string{"status", "app"}, nil, ExitOK, "app@2.service  running  active/running  1202  2026-11-21 19:59:15  45s"},
		{"hint names the instance", []string{"status", "web"}, nil, ExitOK, "hint: web@2 is in crash-loop: see why with 'corral logs web --instance 2'"},
		{"two in crash-loop", []string{"status", "web"}, func(f *fakeAPI) { f.instances["web"][0].Phase = "crash-loop" },
			ExitOK, "hint: web@1, web@2 are in crash-loop: see why with 'corral logs web'"},
		{"no instances", []string{"status", "app"}, func(f *fakeAPI) { f.instances["app"] = nil }, ExitOK, "  no instances"},
		{"unknown pool", []string{"status", "nope"}, nil, ExitInvalid,
			`corral: no pool "nope": 'corral list' shows the pools; pool files live in /etc/corral/pools.d`},
		{"bad name", []string{"status", "-x-"}, nil, ExitUsage, `unknown option "-x-"`},
		{"bad name", []string{"status", "a/b"}, nil, ExitUsage, `bad pool name "a/b"`},
		{"no pool given", []string{"status"}, nil, ExitUsage, "status: give one pool ('corral list' shows them all); usage: corral status POOL [--json]"},
		{"not running", []string{"status", "app"}, func(f *fakeAPI) { f.errs["ListPools"] = api.ErrNotRunning }, ExitNotRunning,
			"corral: corrald is not running: sudo systemctl start corral.service"},
		{"other failure", []string{"status", "app"}, func(f *fakeAPI) { f.errs["ListInstances"] = os.ErrDeadlineExceeded }, ExitInvalid,
			"corral: list instances of app: i/o timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			if tt.mutate != nil {
				tt.mutate(f)
			}
			env, out, _ := testEnv(f, nil)
			code, e := runEnv(t, context.Background(), env, tt.args...)
			if code != tt.code || !strings.Contains(out.String()+e, tt.want) {
				t.Errorf("corral %v: exit %d, output:\n%s%s\nwant exit %d and %q", tt.args, code, out, e, tt.code, tt.want)
			}
			if tt.name == "no crash-loop, no hint" && strings.Contains(out.String(), "hint") {
				t.Errorf("a hint without a crash-loop:\n%s", out)
			}
		})
	}
}

func TestConnectFails(t *testing.T) {
	for _, tt := range []struct {
		connect func(context.Context) (api.API, error)
		code    int
		want    string
	}{
		{func(context.Context) (api.API, error) { return nil, api.ErrNotRunning }, ExitNotRunning, "corral: corrald is not running: sudo systemctl start corral.service"},
		{func(context.Context) (api.API, error) { return nil, os.ErrNotExist }, ExitInvalid, "corral: cannot reach corrald on the system bus: file does not exist"},
		{nil, ExitInvalid, "built without a D-Bus client"},
	} {
		env, _, _ := testEnv(nil, nil)
		env.Connect = tt.connect
		if code, e := runEnv(t, context.Background(), env, "list"); code != tt.code || !strings.Contains(e, tt.want) {
			t.Errorf("exit %d %q, want exit %d %q", code, e, tt.code, tt.want)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{humanDuration(-1), "0s"},
		{humanDuration(45e9), "45s"},
		{humanDuration(12*60e9 + 59e9), "12m"},
		{humanDuration(3 * 3600e9), "3h"},
		{humanDuration(49 * 3600e9), "2d"},
		{cpuTime(api.Unknown), "-"},
		{cpuTime(0), "0.0s"},
		{cpuTime(1_250_000_000), "1.2s"},
		{cpuTime(245e9), "4m05s"},
		{cpuTime(3723e9), "1h02m"},
		{memory(api.Unknown), "-"},
		{memory(0), "0.0 MiB"},
		{memory(12<<20 + 512<<10), "12.5 MiB"},
		{memory(3 << 29), "1.5 GiB"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// TestCordonedShown: a cordoned instance says so in its phase, so does a
// spare, and the
// steering of a pool is explained.
func TestCordonedShown(t *testing.T) {
	in := api.InstanceInfo{Phase: "running", Cordoned: true}
	if got := phaseCell(in); got != "running, cordoned" {
		t.Errorf("phaseCell = %q", got)
	}
	in = api.InstanceInfo{Phase: string(api.PhaseNotAccepting), Queued: 3, Cordoned: true}
	if got := phaseCell(in); got != "not-accepting, 3 queued, cordoned" {
		t.Errorf("phaseCell = %q", got)
	}
	in = api.InstanceInfo{Pool: "app", Phase: "running", Spare: true}
	if got := phaseCell(in); got != "running, spare" {
		t.Errorf("phaseCell = %q", got)
	}
	in.StandsFor = 2
	if got := phaseCell(in); got != "running, spare for app@2" {
		t.Errorf("phaseCell = %q", got)
	}
	j := toJSON(api.PoolInfo{Name: "app"}, []api.InstanceInfo{in}, in.Since())
	if ij := j.Instances[0]; !ij.Spare || ij.StandsFor == nil || *ij.StandsFor != "app@2" {
		t.Errorf("JSON %+v", ij)
	}
	if got := steeringNote("off: steering in the kernel is not available: x"); got != "off: steering in the kernel is not available: x; the pool runs as plain reuseport" {
		t.Errorf("steeringNote = %q", got)
	}
}
