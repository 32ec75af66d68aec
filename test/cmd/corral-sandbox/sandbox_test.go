//go:build integration

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSandbox runs corral-sandbox as a program, with a dummy package standing in for corral's
// .deb: its app.target starts a socket-activated shell that answers HTTP. It checks the whole
// path: boot, install, start, the answer from the host, the guide, and that SIGINT powers the
// box off and leaves no mount.
func TestSandbox(t *testing.T) {
	port := freePort(t)
	deb := dummyDeb(t, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	cmd := exec.Command(os.Args[0], "-deb", deb, "-url", url)
	cmd.Env = append(os.Environ(), "CORRAL_SANDBOX_BE_MAIN=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// One goroutine reads stdout: it hands over the guide once complete, then all of stdout
	// and the exit status.
	up := make(chan string, 1)
	exited := make(chan error, 1)
	var out strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Ctrl-C powers the sandbox off") {
				up <- out.String()
			}
		}
		io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()

	var guide string
	select {
	case guide = <-up:
	case err := <-exited:
		t.Fatalf("corral-sandbox exited before it was up: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &stderr)
	case <-time.After(3 * time.Minute):
		cmd.Process.Signal(syscall.SIGTERM)
		t.Fatalf("corral-sandbox not up after 3 minutes\nstderr:\n%s", &stderr)
	}
	t.Logf("corral-sandbox says:\n%s", guide)
	for _, want := range []string{"hello from the dummy corral", "curl " + url, "cpu?ms=50", "journalctl -u 'app@*'", "-a bash"} {
		if !strings.Contains(guide, want) {
			t.Errorf("the guide lacks %q", want)
		}
	}
	root := regexp.MustCompile(`(/run/sdbox\.[0-9]+)/root`).FindStringSubmatch(guide)
	if root == nil {
		t.Fatal("the guide does not say where the box's root is")
	}

	// The demo answers from the host.
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from the dummy corral\n" {
		t.Errorf("GET %s = %q", url, body)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("corral-sandbox after SIGINT: %v; want exit status 0\nstdout:\n%s\nstderr:\n%s", err, &out, &stderr)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("corral-sandbox did not exit within a minute of SIGINT")
	}
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mountinfo), root[1]) {
		t.Errorf("mounts of %s left behind", root[1])
	}
	if _, err := os.Stat(root[1]); err == nil {
		t.Errorf("%s left behind", root[1])
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
		t.Errorf("port %d still open after power-off", port)
	}
}

// dummyDeb builds a package with the shape corral-sandbox relies on: app.target starts
// something that answers HTTP on port.
func dummyDeb(t *testing.T, port int) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"DEBIAN/control": "Package: corral\nVersion: 0.0.0~sandbox\nArchitecture: amd64\n" +
			"Maintainer: corral tests <tests@corral-pool.org>\nDescription: stand-in for corral in sandbox tests\n",
		"lib/systemd/system/app.target": "[Unit]\nWants=app.socket\nAfter=app.socket\n",
		"lib/systemd/system/app.socket": fmt.Sprintf("[Socket]\nListenStream=127.0.0.1:%d\nAccept=yes\n", port),
		"lib/systemd/system/app@.service": "[Service]\nExecStart=/usr/libexec/corral-dummy/answer\n" +
			"StandardInput=socket\nStandardOutput=socket\n",
		"usr/libexec/corral-dummy/answer": "#!/bin/sh\n" +
			"cr=$(printf '\\r')\n" +
			"while IFS= read -r line; do [ -z \"$line\" ] || [ \"$line\" = \"$cr\" ] && break; done\n" +
			"printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\nConnection: close\\r\\n\\r\\nhello from the dummy corral\\n'\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, "pkg", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "usr/libexec/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, "corral_0.0.0~sandbox_amd64.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", filepath.Join(dir, "pkg"), deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	return deb
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
