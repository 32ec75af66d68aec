package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

// benchMessages measures issue 5's bars in a booted box with corral
// installed: the latency of a broadcast with replies (call to last reply)
// with 2, 16 and 64 demo instances, and the sustained rate of messages to
// one instance with corrald's memory before and after. The client is
// test/bench/msgload, built here and run in the box over the system bus.
func benchMessages(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error)) error {
	if err := installMsgload(ctx, box); err != nil {
		return err
	}
	if err := box.WriteFile("/etc/corral/pools.d/msg.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18196\"]\ninstances = 2\nreadiness = \"notify\"\n"), 0o644); err != nil {
		return err
	}
	if _, err := sh("corral", "apply"); err != nil {
		return err
	}
	if _, err := sh("systemctl", "start", "msg.target"); err != nil {
		return err
	}
	fmt.Printf("messages: `corral broadcast msg ping --wait` as a D-Bus call (test/bench/msgload in the box), demo instances, %s\n\n", time.Now().Format("2006-01-02"))
	fmt.Println("| instances | broadcasts | p50 | p99 | max | bar |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, n := range []int{2, 16, 64} {
		if _, err := sh("corral", "scale", "msg", strconv.Itoa(n)); err != nil {
			return err
		}
		// Every instance up and connected: a broadcast that all answer.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			out, err := sh("corral", "broadcast", "msg", "ready?", "--wait")
			if err == nil && strings.Count(out, "replied") == n {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d instances of msg not all answering after 2m:\n%s", n, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
		out, err := sh("/opt/corral-bench/msgload", "-mode", "latency", "-pool", "msg", "-n", "1000")
		if err != nil {
			return err
		}
		kv := fields(out)
		bar := ""
		if n == 64 {
			bar = "p99 ≤ 5 ms"
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", kv["instances"], kv["n"], kv["p50"], kv["p99"], kv["max"], bar)
	}

	if err := messageRate(sh); err != nil {
		return err
	}
	fmt.Println()
	// Leave no pool behind for the next suite, whose pool files would
	// otherwise come after msg's.
	if _, err := sh("corral", "stop", "msg"); err != nil {
		return err
	}
	_, err := sh("rm", "/etc/corral/pools.d/msg.toml")
	return err
}

// fields parses "k=v k=v".
func fields(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

// installMsgload builds test/bench/msgload and copies it into the box.
func installMsgload(ctx context.Context, box *sdbox.Box) error {
	tmp, err := os.MkdirTemp("", "msgload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "msgload")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./test/bench/msgload").CombinedOutput(); err != nil {
		return fmt.Errorf("build msgload: %w: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := box.WriteFile("/opt/corral-bench/msgload", data, 0o755); err != nil {
		return err
	}
	return nil
}

// messageRate measures the sustained rate of messages to one instance, in
// three windows, and corrald's memory around each.
func messageRate(sh func(...string) (string, error)) error {
	if _, err := sh("corral", "scale", "msg", "2"); err != nil {
		return err
	}
	pid, _ := sh("systemctl", "show", "-P", "MainPID", "corral.service")
	pid = strings.TrimSpace(pid)
	rss := func() string {
		kb, err := vmRSS(sh, pid)
		if err != nil {
			return "?"
		}
		return fmt.Sprintf("%d kB", kb)
	}
	fmt.Println()
	fmt.Println("| window (10 s, 4 callers, `Send msg@1` without waiting) | delivered/s | not delivered | corrald VmRSS after |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| before | | | %s |\n", rss())
	for w := 1; w <= 3; w++ {
		out, err := sh("/opt/corral-bench/msgload", "-mode", "rate", "-target", "msg@1", "-d", "10s")
		if err != nil {
			return err
		}
		kv := fields(out)
		fmt.Printf("| %d | %s | %s | %s |\n", w, kv["per_second"], kv["not_delivered"], rss())
	}
	return nil
}
