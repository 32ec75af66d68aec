package main

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	wrkpkg "github.com/corral-pool/corral/test/wrk"
)

// TestLoadOf: a load is wrk's figures and count.lua's lines, by pid.
func TestLoadOf(t *testing.T) {
	l := loadOf(wrkpkg.Result{RPS: 391.72, P50: 254120 * time.Microsecond, P99: 1020 * time.Millisecond, Requests: 3921,
		Errors: wrkpkg.Errors{Connect: 1, Read: 2, Timeout: 3, Status: 4}, CPU: time.Second,
		Lines: []string{
			"peers: pid 4242 responses 1900 first 1795300677728.726",
			"peers: pid 77 responses 2017 first 1795300677729.500",
			"peers: pid - responses 4 first 1795300677730.000",
			"something else",
		}})
	want := load{rps: 391.72, p50: 254120 * time.Microsecond, p99: 1020 * time.Millisecond, requests: 3921,
		connect: 1, read: 2, timeout: 3, non2xx: 4, wrkCPU: time.Second}
	got := l
	got.pids = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loadOf:\n got %+v\nwant %+v", got, want)
	}
	if l.failed() != 10 {
		t.Errorf("failed = %d, want 10", l.failed())
	}
	wantPids := []pidCount{
		{0, 4, time.UnixMicro(1795300677730000)},
		{77, 2017, time.UnixMicro(1795300677729500)},
		{4242, 1900, time.UnixMicro(1795300677728726)},
	}
	if !reflect.DeepEqual(l.pids, wantPids) {
		t.Errorf("pids:\n got %+v\nwant %+v", l.pids, wantPids)
	}
	if c := l.counts(); !reflect.DeepEqual(c, []int{2017, 1900}) {
		t.Errorf("counts = %v, want [2017 1900]", c)
	}
	if p := pidCounts([]string{"peers: pid x"}); p != nil {
		t.Errorf("pidCounts of no count lines = %v, want nil", p)
	}
}

func TestWrkVersion(t *testing.T) {
	if v := wrkVersion("wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer"); v != "wrk 4.1.0" {
		t.Errorf("wrkVersion = %q", v)
	}
}

func TestJain(t *testing.T) {
	for _, c := range []struct {
		counts []int
		n      int
		want   float64
	}{
		{[]int{100, 100}, 2, 1},
		{[]int{2045}, 2, 0.5}, // one of two served everything
		{[]int{0, 2045}, 2, 0.5},
		{[]int{2029, 1989}, 2, 0.9999},
		{[]int{3, 1}, 2, 0.8},
		{[]int{50, 50, 10}, 2, 0.7908}, // a replacement: n grows to 3
		{nil, 2, 0},
		{[]int{7}, 1, 1},
	} {
		if got := jain(c.counts, c.n); math.Abs(got-c.want) > 1e-4 {
			t.Errorf("jain(%v, %d) = %.5f, want %.4f", c.counts, c.n, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{5, 5, 1}, 5},
	} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	xs := []float64{3, 1, 2}
	median(xs)
	if !slices.Equal(xs, []float64{3, 1, 2}) {
		t.Errorf("median sorted its argument: %v", xs)
	}
	if got := medianDur([]time.Duration{time.Second, 3 * time.Second, 2 * time.Second}); got != 2*time.Second {
		t.Errorf("medianDur = %v", got)
	}
}

func TestShares(t *testing.T) {
	if got := shares([]int{1, 3}, 2); !slices.Equal(got, []float64{0.75, 0.25}) {
		t.Errorf("shares = %v", got)
	}
	if got := shares([]int{10}, 2); !slices.Equal(got, []float64{1, 0}) {
		t.Errorf("shares, one starved = %v", got)
	}
	if got := medianShares([][]float64{{0.6, 0.4}, {0.5, 0.5}, {0.7, 0.3}, {1}}); len(got) != 2 || math.Abs(got[0]-0.65) > 1e-9 || math.Abs(got[1]-0.35) > 1e-9 {
		t.Errorf("medianShares = %v", got)
	}
	if got := fmtShares([]float64{0.502, 0.498}); got != "50.2 / 49.8" {
		t.Errorf("fmtShares = %q", got)
	}
}

func TestParseKill(t *testing.T) {
	out := `0      0      127.0.0.1:18080 127.0.0.1:41000 users:(("node",pid=312,fd=23))
0      0      127.0.0.1:18080 127.0.0.1:41002 users:(("node",pid=3120,fd=24))
49     0      127.0.0.1:18080 127.0.0.1:41004 users:(("node",pid=312,fd=25))
0      0      127.0.0.1:18080 127.0.0.1:41006
---
LISTEN 7      4096   127.0.0.1:18080 0.0.0.0:* users:(("node",pid=312,fd=3),("systemd",pid=1,fd=60))
LISTEN 2      4096   127.0.0.1:18080 0.0.0.0:* users:(("node",pid=3120,fd=3),("systemd",pid=1,fd=61))
---
1795300677728726000
`
	open, queued, at, err := parseKill(out, 312)
	if err != nil {
		t.Fatal(err)
	}
	if open != 2 || queued != 7 || !at.Equal(time.Unix(0, 1795300677728726000)) {
		t.Errorf("parseKill = %d open, %d queued, %v", open, queued, at)
	}
	if _, _, _, err := parseKill("sh: ss: not found\n", 312); err == nil {
		t.Error("parseKill of garbage: no error")
	}
	if s := killScript(18080, 312); !strings.HasSuffix(s, "kill -KILL 312") || !strings.Contains(s, "sport = :18080") {
		t.Errorf("killScript = %q", s)
	}
}

func TestReplacementAfter(t *testing.T) {
	kill := time.Unix(100, 0)
	pids := []pidCount{
		{0, 3, kill.Add(time.Millisecond)},          // errors
		{10, 500, kill.Add(-time.Second)},           // the survivor
		{11, 200, kill.Add(-time.Second)},           // the victim
		{12, 40, kill.Add(90 * time.Millisecond)},   // the replacement
		{13, 40, kill.Add(200 * time.Millisecond)},  // a second one
		{14, 40, kill.Add(-100 * time.Millisecond)}, // before the kill: not a replacement
	}
	d, ok := replacementAfter(pids, []int{10, 11}, kill)
	if !ok || d != 90*time.Millisecond {
		t.Errorf("replacementAfter = %v, %v; want 90ms", d, ok)
	}
	if _, ok := replacementAfter(pids[:3], []int{10, 11}, kill); ok {
		t.Error("replacementAfter without a new pid: found one")
	}
}

func TestPids(t *testing.T) {
	if got := parsePids("812 0\n\n77\n"); !slices.Equal(got, []int{77, 812}) {
		t.Errorf("parsePids = %v", got)
	}
	jl := `>>>> In-memory PM2 is out-of-date, do:
[{"pid":301,"name":"peers","pm2_env":{"status":"online"}},{"pid":0,"name":"peers","pm2_env":{"status":"launching"}},{"pid":299,"name":"peers","pm2_env":{"status":"online"}}]`
	got, err := pm2Pids(jl)
	if err != nil || !slices.Equal(got, []int{299, 301}) {
		t.Errorf("pm2Pids = %v, %v", got, err)
	}
}

func TestParseCPUTimes(t *testing.T) {
	busy, total, err := parseCPUTimes("cpu  100 5 50 800 20 1 4 0 7 0\ncpu0 1 2 3 4\n")
	if err != nil || busy != 160 || total != 980 {
		t.Errorf("parseCPUTimes = %d, %d, %v; want 160, 980", busy, total, err)
	}
	if _, _, err := parseCPUTimes("intr 1 2\n"); err == nil {
		t.Error("no error for a bad /proc/stat")
	}
}

func TestPoolFile(t *testing.T) {
	all := specs(2)
	get := func(id string) spec {
		for _, s := range all {
			if s.id == id {
				return s
			}
		}
		t.Fatalf("no spec %s", id)
		return spec{}
	}
	node := poolFile(get("corral-node-shared"), 18080, "/opt/x/server.js")
	want := "exec      = [\"/usr/bin/node\", \"/opt/x/server.js\"]\nlisten    = [\"127.0.0.1:18080\"]\ninstances = 2\nbalance   = \"shared\"\nstart_on_boot = false\n\n[restart]\ncrash_loop_failures = 1000\n"
	if node != want {
		t.Errorf("node pool file:\n%s\nwant\n%s", node, want)
	}
	goPool := poolFile(get("corral-go-reuseport"), 18081, "")
	for _, s := range []string{`"/usr/libexec/corral/corral-demo"`, `balance   = "reuseport"`, `readiness = "notify"`, "write_execute_memory = false", "127.0.0.1:18081"} {
		if !strings.Contains(goPool, s) {
			t.Errorf("go pool file has no %s:\n%s", s, goPool)
		}
	}
}

func TestSelected(t *testing.T) {
	sel, err := selected("pm2,node", 2)
	if err != nil || len(sel) != 2 || sel[0].id != "node" || sel[1].id != "pm2" {
		t.Errorf("selected = %v, %v", sel, err)
	}
	if _, err := selected("node,nginx", 2); err == nil || !strings.Contains(err.Error(), "nginx") {
		t.Errorf("selected with an unknown system: %v", err)
	}
	all, _ := selected("all", 2)
	if len(all) != len(specIDs())-1 || slices.ContainsFunc(all, func(s spec) bool { return s.extra }) {
		t.Errorf("all: %d systems; want every one but the extra", len(all))
	}
	if sel, err := selected("corral-node-nosandbox", 2); err != nil || len(sel) != 1 || !sel[0].noSandbox {
		t.Errorf("selected the extra system: %v, %v", sel, err)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"}, {850 * time.Microsecond, "850 µs"}, {5631 * time.Microsecond, "5.63 ms"},
		{254 * time.Millisecond, "254 ms"}, {1310 * time.Millisecond, "1.31 s"},
	} {
		if got := fmtDur(c.d); got != c.want {
			t.Errorf("fmtDur(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	for v, want := range map[float64]string{391.72: "392", 69993.4: "69 993", 1234567: "1 234 567", 0: "0"} {
		if got := fmtRPS(v); got != want {
			t.Errorf("fmtRPS(%v) = %q, want %q", v, got, want)
		}
	}
	if got := fmtRounds([]float64{40, 31, 33}); got != "33 (40, 31, 33)" {
		t.Errorf("fmtRounds = %q", got)
	}
}

// testReport is a report of two rounds of three systems, with made-up
// figures.
func testReport() *report {
	cfg := config{rounds: 2, dur: 10 * time.Second, killDur: 6 * time.Second, conns: 100, ms: 5, instances: 2,
		command: "go run ./test/bench/peers -deb dist/corral_0.1.0_amd64.deb"}
	sel, _ := selected("node,cluster,corral-node-reuseport", 2)
	res := &results{loads: map[cell][]load{}, kills: map[cell][]killResult{}}
	mk := func(rps float64, p99 time.Duration, counts ...int) load {
		l := load{rps: rps, p50: p99 / 2, p99: p99, requests: int(rps * 10), wrkCPU: time.Second, dur: 10 * time.Second}
		for i, n := range counts {
			l.pids = append(l.pids, pidCount{pid: 100 + i, n: n})
		}
		return l
	}
	for _, rt := range []string{"cpu", "hello"} {
		for _, sh := range shapes {
			f := 1.0
			if rt == "hello" {
				f = 200
			}
			res.loads[cell{"node", rt, sh, false}] = []load{mk(180*f, 7*time.Second, 1800), mk(182*f, 6*time.Second, 1820)}
			res.loads[cell{"cluster", rt, sh, false}] = []load{mk(350*f, 5*time.Second, 1750, 1750), mk(340*f, 5*time.Second, 1700, 1700)}
			res.loads[cell{"corral-node-reuseport", rt, sh, false}] = []load{mk(370*f, time.Second, 1900, 1800), mk(372*f, time.Second, 1860, 1860)}
		}
	}
	res.loads[cell{"node", "hello", keepAlive, true}] = []load{mk(30000, time.Millisecond, 300000)} // a counting run
	kill := time.Unix(100, 0)
	for _, sh := range shapes {
		res.kills[cell{"corral-node-reuseport", "cpu", sh, false}] = []killResult{
			{load: load{read: 40}, open: 50, replacement: 90 * time.Millisecond, replaced: true},
			{load: load{read: 45, connect: 1}, open: 44, replacement: 120 * time.Millisecond, replaced: true},
		}
		res.kills[cell{"cluster", "cpu", sh, false}] = []killResult{{load: load{read: 33}, open: 50}}
	}
	_ = kill
	m := machine{cores: 2, cpu: "Test CPU", os: "Debian 12.13", kernel: "Linux 6.1", systemd: "systemd 252", node: "node v20.20.2",
		pm2: "pm2 7.0.4", wrk: "wrk 4.1.0", goVer: "go1.26.8", corral: "0.1.0", date: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), busyBefore: 0.3}
	return newReport(cfg, m, sel, res)
}

func TestMarkdown(t *testing.T) {
	r := testReport()
	md := r.markdown("bench-peers.png", true)
	for _, want := range []string{
		"Command: `go run ./test/bench/peers -deb dist/corral_0.1.0_amd64.deb`.",
		"2 cores (Test CPU), Debian 12.13, Linux 6.1, systemd 252; node v20.20.2, pm2 7.0.4, wrk 4.1.0, go1.26.8, corral 0.1.0; 2026-11-21.",
		"**Provisional**: The machine was busy with other work: 30% of its CPU",
		"A short run (rounds: 2, 10s each).",
		"![req/s and p99 per system](bench-peers.png)",
		"| `/cpu?ms=5` | keep-alive | node, 1 process | 181 | 3.25 s | 6.50 s | 0 | 10% of a core, 553 µs/req | – | – |",
		"| `/cpu?ms=5` | keep-alive | node cluster ×2 | 345 | 2.50 s | 5.00 s | 0 |",
		"| 50.0 / 50.0 | 1.000 |",
		"| corral node, reuseport | keep-alive | 0.5 (0, 1) | 43 (40, 46) | 47 (50, 44) | 0 (0, 0) | 105 ms (90.00 ms, 120 ms) |",
		"| node cluster ×2 | `Connection: close` | 0 (0) | 33 (33) | 50 (50) | 0 (0) | none (none) |",
		"the shares from a 5s run with it right after. With it, wrk took 1.21x the CPU per response (median of 1 systems and load shapes; keep-alive: 3 µs instead of 3 µs) and the servers answered 0.83x the req/s.",
		"| Node app under corral ≥ 1.2x Node's cluster module: `/cpu?ms=5`, `Connection: close` | 371 req/s; cluster 345: 1.08x | **no** |",
		"zero refused connections | 1 refused in 2 runs | **no** |",
		"failed ≤ the killed worker's open connections | over in 1 of 2 runs | **no** |",
		"replacement serving within 150 ms | median 105 ms, 2 of 2 runs replaced | yes |",
		"| `/` | `Connection: close` | corral node, reuseport | 74 000; 1.00 s; 0; 0% · 74 400; 1.00 s; 0; 0% |",
		"Other work (processes outside the benchmark, and CPU time the hypervisor gave to other machines) took 0% of a core during the median run, 0% during the busiest.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown has no %q:\n%s", want, md)
		}
	}
	// pm2 did not run: no goal that needs it.
	if strings.Contains(md, "≥ pm2") {
		t.Errorf("markdown has a pm2 goal without pm2:\n%s", md)
	}
	if md2 := r.markdown("", false); strings.Contains(md2, "Every round") || strings.Contains(md2, "![") {
		t.Errorf("markdown without chart and rounds:\n%s", md2)
	}
}

func TestGnuplot(t *testing.T) {
	r := testReport()
	r.sel = append(r.sel, specs(2)[2]) // pm2: never ran
	gp := r.gnuplot("docs/bench-peers.png")
	for _, want := range []string{
		"set output \"docs/bench-peers.png\"\n",
		"$d0 << EOD\n\"node, 1 process\" 181.0 181.0 6500.00 6500.00\n\"node cluster ×2\" 345.0 345.0 5000.00 5000.00\n\"corral node, reuseport\" 371.0 371.0 1000.00 1000.00\n\"pm2 -i 2\" ? ? ? ?\nEOD\n",
		"$d1 << EOD\n\"node, 1 process\" 36200.0 ",
		"set multiplot layout 2,2 title \"wrk -t1 -c100 on 127.0.0.1, 2 cores, median of 2 rounds, 2026-11-21 (provisional: busy machine or short run)\"\n",
		"set title \"GET /cpu?ms=5: req/s\"\nset ylabel \"req/s\"\nplot $d0 using 2:xtic(1) title \"keep-alive\", $d0 using 3 title \"Connection: close\"\n",
		"set title \"GET /: p99\"\nset ylabel \"ms\"\nplot $d1 using 4:xtic(1) title \"keep-alive\", $d1 using 5 title \"Connection: close\"\n",
		"unset multiplot\n",
	} {
		if !strings.Contains(gp, want) {
			t.Errorf("gnuplot script has no %q:\n%s", want, gp)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# Benchmarks\n\nintro\n\n" + beginMarker + "\n\nold table\n\n" + endMarker + "\n\nanalysis\n"
	got, err := replaceSection(doc, "new table\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\nintro\n\n" + beginMarker + "\n\nnew table\n\n" + endMarker + "\n\nanalysis\n"
	if got != want {
		t.Errorf("replaceSection:\n%s\nwant\n%s", got, want)
	}
	if _, err := replaceSection("# no markers\n", "x"); err == nil {
		t.Error("no error without markers")
	}
}

func TestCommandLine(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	got := commandLine([]string{"-deb", filepath.Join(wd, "dist", "corral_0.1.0_amd64.deb"), "-out=" + filepath.Join(wd, "docs"), "-cache", "/var/cache/x", "-d", "3s"})
	want := "go run ./test/bench/peers -deb dist/corral_0.1.0_amd64.deb -out=docs -cache x -d 3s"
	if got != want {
		t.Errorf("commandLine:\n got %q\nwant %q", got, want)
	}
}

func TestProcStat(t *testing.T) {
	ppid, ticks, ok := parseProcStat("4242 (node (x) y) S 4200 4242 4200 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 7 0 900 1000 2000\n")
	if !ok || ppid != 4200 || ticks != 281 {
		t.Errorf("parseProcStat = %d, %d, %v; want 4200, 281, true", ppid, ticks, ok)
	}
	if _, _, ok := parseProcStat("garbage"); ok {
		t.Error("parseProcStat of garbage: ok")
	}
	if busy, steal := userTicks("cpu  100 5 50 800 20 1 4 9 0 0\n"); busy != 155 || steal != 9 {
		t.Errorf("userTicks = %d, %d; want 155, 9", busy, steal)
	}
}

func TestOtherCPU(t *testing.T) {
	// 1 is init, 10 the benchmark, 11 its wrk-like child, 12 a grandchild
	// started in between, 20 someone else's, 30 a kernel thread, 40 pm2's
	// daemon (a root of its own).
	a := procSnap{busy: 1000, steal: 5,
		cpu:  map[int]uint64{1: 5, 10: 100, 11: 50, 20: 10, 30: 0, 40: 7},
		ppid: map[int]int{1: 0, 10: 1, 11: 10, 20: 1, 30: 2, 40: 1}}
	b := procSnap{busy: 1390, steal: 15,
		cpu:  map[int]uint64{1: 5, 10: 120, 11: 150, 12: 30, 20: 60, 30: 40, 40: 17},
		ppid: map[int]int{1: 0, 10: 1, 11: 10, 12: 11, 20: 1, 30: 2, 40: 1}}
	// 390 ticks busy and 10 stolen: 400 in all; ours 20 + 100 + 30 + 10, kernel 40, wrk 0.5 s
	// (50 ticks): other = 400 - 200 - 50 = 150 ticks, of which 50 by 20
	// and 100 by processes gone by b.
	if got := otherCPU(a, b, []int{10, 40}, 500*time.Millisecond); got != 1500*time.Millisecond {
		t.Errorf("otherCPU = %v, want 1.5s", got)
	}
	if got := otherCPU(a, a, []int{10}, time.Second); got != 0 {
		t.Errorf("otherCPU with nothing = %v, want 0", got)
	}
}

func TestRowSharesFromCountingRun(t *testing.T) {
	r := testReport()
	s := r.sel[2] // corral node, reuseport
	r.res.loads[cell{s.id, "hello", connClose, false}] = []load{{rps: 9000, dur: time.Second}}
	r.res.loads[cell{s.id, "hello", connClose, true}] = []load{{rps: 8000, dur: time.Second, pids: []pidCount{{pid: 1, n: 600}, {pid: 2, n: 400}}}}
	w, ok := r.row(s, r.routes[1], connClose, false)
	if !ok || w.rps != 9000 || !slices.Equal(w.shares, []float64{0.6, 0.4}) || math.Abs(w.jain-0.9615) > 1e-4 {
		t.Errorf("row = %+v, %v; want 9000 req/s from the measured run, shares 60/40 from the counting run", w, ok)
	}
}
