package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-pool/corral/internal/units"
)

// TestRun: a broken pool is logged at error priority with file:line:col and
// skipped; the good one is generated.
func TestRun(t *testing.T) {
	pools, out := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(pools, "good.toml"), []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:7101\"]\n"), 0o644)
	os.WriteFile(filepath.Join(pools, "bad.toml"), []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:7102\"]\nbalance = 3\n"), 0o644)
	var log bytes.Buffer
	run(out, pools, 2, units.DefaultHost(), &log)
	if _, err := os.Stat(filepath.Join(out, "good@.service")); err != nil {
		t.Errorf("good pool not generated: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "bad@.service")); err == nil {
		t.Errorf("bad pool generated")
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "<3>corral-generator[") ||
		!strings.Contains(lines[0], "bad.toml:3:11: balance must be") || !strings.Contains(lines[0], "run 'corral validate'") {
		t.Errorf("log:\n%s", log.String())
	}
}

// TestRunMissingDir: no pool directory is no pools, and no noise.
func TestRunMissingDir(t *testing.T) {
	var log bytes.Buffer
	run(t.TempDir(), filepath.Join(t.TempDir(), "nope"), 2, units.DefaultHost(), &log)
	if log.Len() != 0 {
		t.Errorf("log: %s", log.String())
	}
}

// TestDaemonSockets: corral.toml's addresses become socket units, enabled;
// a broken file is logged and generates none.
func TestDaemonSockets(t *testing.T) {
	out, conf := t.TempDir(), filepath.Join(t.TempDir(), "corral.toml")
	os.WriteFile(conf, []byte("[metrics]\nlisten = \"127.0.0.1:9810\"\n[agent]\nlisten = \":9811\"\n"), 0o644)
	var log bytes.Buffer
	daemon(out, conf, &log)
	if log.Len() != 0 {
		t.Errorf("log: %s", log.String())
	}
	for _, f := range []string{"corral-agent.socket", "corral-metrics.socket", "sockets.target.wants/corral-agent.socket", "corral.service.wants/corral-agent.socket"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	out = t.TempDir()
	os.WriteFile(conf, []byte("[agent]\nlisten = \"haproxy.example:1\"\n"), 0o644)
	log.Reset()
	daemon(out, conf, &log)
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("a broken corral.toml generated %d files", len(ents))
	}
	if !strings.HasPrefix(log.String(), "<3>corral-generator[") || !strings.Contains(log.String(), "is not an IP address") {
		t.Errorf("log: %s", log.String())
	}
	log.Reset()
	daemon(t.TempDir(), filepath.Join(t.TempDir(), "none.toml"), &log)
	if log.Len() != 0 {
		t.Errorf("no corral.toml: %s", log.String())
	}
}
