//go:build vmguest

package guest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/wrk"
)

// TestCgroupV2: the guest has what the container lacks, a cgroup v2 with the cpu, memory
// and pids controllers, which systemd enables for the units that need them.
func TestCgroupV2(t *testing.T) {
	data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"cpu", "memory", "pids"} {
		if !strings.Contains(" "+string(data)+" ", " "+c+" ") {
			t.Errorf("controller %s is not available: %q", c, data)
		}
	}
}

// TestListShowsCPUAndMemory: corral list reads real CPU time and memory for a busy pool.
func TestListShowsCPUAndMemory(t *testing.T) {
	must(t, "corral", "start", "app")
	t.Cleanup(func() { command(2*time.Minute, "corral", "stop", "app") })
	waitFor(t, "the demo answers", time.Minute, func() error { return get("http://127.0.0.1:8080/", 5*time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	monit := make(chan string, 1)
	go func() {
		out, _ := command(time.Minute, "corral", "monit", "app", "--count", "3", "--interval", "1s")
		monit <- out
	}()
	res, err := wrk.Run(ctx, wrk.Options{URL: "http://127.0.0.1:8080/cpu?ms=5", Conns: 4, Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// corral monit, like pm2 monit: CPU % over each interval, and memory.
	m := <-monit
	if !regexp.MustCompile(`\b[1-9][0-9]*\.[0-9]%`).MatchString(m) || !strings.Contains(m, "MiB") {
		t.Errorf("corral monit under load shows no CPU %% above 0 or no memory:\n%s", m)
	}
	t.Logf("load: %d requests, %d failed", res.Requests, res.Errors.Failed())
	ins := list(t, "app")
	if len(ins) == 0 {
		t.Fatal("corral list shows no instance of app")
	}
	for _, in := range ins {
		if in.CPUNSec == nil || *in.CPUNSec == 0 || in.MemoryBytes == nil || *in.MemoryBytes == 0 {
			t.Errorf("%s: cpu_nsec %s, memory_bytes %s: want both read and above 0", in.Name, orNull(in.CPUNSec), orNull(in.MemoryBytes))
		}
	}
	t.Logf("corral list:\n%s", must(t, "corral", "list"))

	// The same counters in the metrics, read from the cgroups.
	if err := os.WriteFile("/etc/corral/corral.toml", []byte("[metrics]\nlisten = \"127.0.0.1:9810\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "systemctl", "daemon-reload")
	must(t, "systemctl", "restart", "corral.service")
	var text string
	waitFor(t, "the metrics", time.Minute, func() error {
		out, err := command(10*time.Second, "curl", "-fsS", "http://127.0.0.1:9810/metrics")
		text = out
		return err
	})
	for _, in := range ins {
		for _, name := range []string{"corral_instance_memory_bytes", "corral_instance_cpu_seconds_total"} {
			re := regexp.MustCompile(name + `\{index="` + fmt.Sprint(in.Index) + `",pool="app"\} ([0-9.e+]+)`)
			m := re.FindStringSubmatch(text)
			if m == nil || m[1] == "0" {
				t.Errorf("no %s above 0 for %s in the metrics:\n%s", name, in.Name, text)
				continue
			}
			t.Logf("%s{%s} %s", name, in.Name, m[1])
		}
	}
}

func orNull(p *uint64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

// TestCPUQuota: cpu_quota = "50%" holds a busy instance at half a core (±10%).
func TestCPUQuota(t *testing.T) {
	writePool(t, "quota", `exec = ["/usr/bin/python3", "-c", "while True: pass"]
listen = ["127.0.0.1:18301"]
instances = 1
cpu_quota = "50%"
`)
	unit := "quota@1.service"
	waitFor(t, unit+" active", time.Minute, func() error {
		if st := show(unit, "ActiveState"); st != "active" {
			return fmt.Errorf("ActiveState=%s", st)
		}
		return nil
	})
	if q := show(unit, "CPUQuotaPerSecUSec"); q != "500ms" {
		t.Errorf("CPUQuotaPerSecUSec=%s, want 500ms", q)
	}
	time.Sleep(2 * time.Second)
	c0, w0 := showInt(unit, "CPUUsageNSec"), time.Now()
	time.Sleep(10 * time.Second)
	c1, w1 := showInt(unit, "CPUUsageNSec"), time.Now()
	if c0 < 0 || c1 < 0 {
		t.Fatalf("CPUUsageNSec is not set (%d, %d): no CPU accounting", c0, c1)
	}
	share := float64(c1-c0) / float64(w1.Sub(w0).Nanoseconds())
	t.Logf("busy instance under cpu_quota = 50%%: %.3f of a core over %v", share, w1.Sub(w0).Round(time.Millisecond))
	if share < 0.45 || share > 0.55 {
		t.Errorf("the busy instance used %.3f of a core, want 0.5 ± 10%%", share)
	}
}

// TestOutOfMemory: an instance that allocates past memory_max is killed by the kernel, and
// restarted like any crash; corral status says it ran out of memory, naming the limit.
func TestOutOfMemory(t *testing.T) {
	writePool(t, "hog", `exec = ["/usr/bin/python3", "-c", "import time; time.sleep(2); b = b'x' * (300 << 20); time.sleep(600)"]
listen = ["127.0.0.1:18302"]
instances = 1
memory_max = "100M"
`)
	unit := "hog@1.service"
	const want = "out of memory (memory_max = 100M)"
	var status string
	waitFor(t, "corral status hog says "+want, 2*time.Minute, func() error {
		status = must(t, "corral", "status", "hog")
		if !strings.Contains(status, want) {
			return fmt.Errorf("NRestarts=%s Result=%s; corral status:\n%s", show(unit, "NRestarts"), show(unit, "Result"), status)
		}
		return nil
	})
	t.Logf("corral status hog:\n%s", status)
	waitFor(t, "hog@1 restarted", 2*time.Minute, func() error {
		if n := showInt(unit, "NRestarts"); n < 1 {
			return fmt.Errorf("NRestarts=%d", n)
		}
		return nil
	})
	logs, _ := command(time.Minute, "journalctl", "-u", unit, "--no-pager", "-o", "cat")
	if !strings.Contains(logs, "OOM killer") && !strings.Contains(logs, "oom-kill") {
		t.Errorf("the journal of %s does not mention the OOM killer:\n%s", unit, logs)
	}
}
