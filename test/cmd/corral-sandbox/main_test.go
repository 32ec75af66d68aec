package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain runs main instead of the tests when the integration test starts this test binary
// as the corral-sandbox program (the standard library's helper-process idiom).
func TestMain(m *testing.M) {
	if os.Getenv("CORRAL_SANDBOX_BE_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestMissingDeb(t *testing.T) {
	err := run(context.Background(), config{deb: "/nonexistent/corral_9_amd64.deb", url: "http://127.0.0.1:8080/"}, nil, nil)
	if err == nil || err.Error() != "-deb /nonexistent/corral_9_amd64.deb: no such file or directory" {
		t.Errorf("run with a missing .deb: got %v", err)
	}
	err = run(context.Background(), config{deb: t.TempDir(), url: "http://127.0.0.1:8080/"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("run with a directory as .deb: got %v", err)
	}
}

func TestNoDebBuilt(t *testing.T) {
	t.Chdir(t.TempDir())
	_, err := findDeb("")
	if err == nil || !strings.Contains(err.Error(), "make deb") {
		t.Errorf("findDeb without dist/: got %v; want advice to run make deb", err)
	}
}

func TestNewest(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	for name, age := range map[string]time.Duration{
		"corral_0.1.1_amd64.deb": 2 * time.Hour,
		"corral_0.1.0_amd64.deb": time.Hour, // rebuilt last: the one `make run` wants
		"corral_0.0.9_amd64.deb": 3 * time.Hour,
		"other_9.9.9_amd64.deb":  0,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := newest(filepath.Join(dir, "corral_*_amd64.deb"))
	if want := filepath.Join(dir, "corral_0.1.0_amd64.deb"); err != nil || got != want {
		t.Errorf("newest = %q, %v; want %q", got, err, want)
	}
}

func TestBadURL(t *testing.T) {
	deb := filepath.Join(t.TempDir(), "x.deb")
	if err := os.WriteFile(deb, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), config{deb: deb, url: "127.0.0.1:8080"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "-url") {
		t.Errorf("run with a URL without scheme: got %v", err)
	}
}

func TestFlags(t *testing.T) {
	var stderr strings.Builder
	if _, err := parseFlags([]string{"extra"}, &stderr); err == nil {
		t.Error("parseFlags with an argument: want an error")
	}
	cfg, err := parseFlags([]string{"-deb", "x.deb"}, &stderr)
	if err != nil || cfg.deb != "x.deb" || cfg.url != "http://127.0.0.1:8080/" || cfg.wait != 30*time.Second {
		t.Errorf("parseFlags(-deb x.deb) = %+v, %v", cfg, err)
	}
}
