package vmbox

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// readCPIO reads back a gzip'd newc archive: name -> mode and data, in order.
func readCPIO(t *testing.T, r io.Reader) []cpioFile {
	t.Helper()
	z, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	field := func(hdr []byte, i int) int {
		n, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header field %d: %v", i, err)
		}
		return int(n)
	}
	var files []cpioFile
	for off := 0; ; {
		hdr := data[off : off+110]
		if string(hdr[:6]) != "070701" {
			t.Fatalf("offset %d: magic %q", off, hdr[:6])
		}
		size, namesize := field(hdr, 6), field(hdr, 11)
		name := string(data[off+110 : off+110+namesize-1])
		off += 110 + namesize
		off += (4 - off%4) % 4
		body := data[off : off+size]
		off += size
		off += (4 - off%4) % 4
		if name == "TRAILER!!!" {
			if off != len(data) {
				t.Errorf("%d bytes after the trailer", len(data)-off)
			}
			return files
		}
		files = append(files, cpioFile{name: name, mode: uint32(field(hdr, 1)), data: body})
	}
}

func TestWriteCPIO(t *testing.T) {
	in := []cpioFile{
		{name: "bin", mode: modeDir | 0o755},
		{name: "bin/busybox", mode: modeReg | 0o755, data: []byte("12345")},
		{name: "init", mode: modeReg | 0o755, data: []byte("#!/bin/sh\n")},
		{name: "mod/x.ko", mode: modeReg | 0o644, data: []byte{}},
	}
	var buf bytes.Buffer
	if err := writeCPIO(&buf, in); err != nil {
		t.Fatal(err)
	}
	out := readCPIO(t, &buf)
	if len(out) != len(in) {
		t.Fatalf("read back %d entries, want %d", len(out), len(in))
	}
	for i := range out {
		if out[i].name != in[i].name || out[i].mode != in[i].mode || !bytes.Equal(out[i].data, in[i].data) {
			t.Errorf("entry %d: read back %+v, want %+v", i, out[i], in[i])
		}
	}
}

func TestParseDepends(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"license=GPL\x00depends=virtio,virtio-ring\x00intree=Y\x00", []string{"virtio", "virtio_ring"}},
		{"depends=\x00", nil},
		{"license=GPL\x00", nil},
		{"", nil},
	} {
		if got := parseDepends([]byte(c.in)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseDepends(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestInitScript(t *testing.T) {
	s := initScript([]string{"virtio", "9p"}, []string{"postgresql.service"})
	for _, want := range []string{
		"insmod /mod/virtio.ko", "insmod /mod/9p.ko",
		"ln -sf /dev/null '/root/etc/systemd/system/postgresql.service'",
		"mount -t tmpfs -o mode=1777,nosuid,nodev tmp /root/tmp",
		"rm -f /root/usr/sbin/policy-rc.d",
		"exec switch_root /root /lib/systemd/systemd",
		"ExecStart=/bin/sh " + ShareDir + "/run.sh",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
	if strings.Index(s, "insmod /mod/virtio.ko") > strings.Index(s, "insmod /mod/9p.ko") {
		t.Error("modules are not loaded in the order given")
	}
}

func TestRunScript(t *testing.T) {
	s := runScript(`echo 'it''s' "$HOME"`)
	if !strings.Contains(s, `/bin/sh -c 'echo '\''it'\'''\''s'\'' "$HOME"'`) {
		t.Errorf("command not quoted as one word:\n%s", s)
	}
	if strings.Index(s, "rc.tmp") > strings.Index(s, "poweroff") {
		t.Error("the guest powers off before it writes the exit status")
	}
}

func TestGoTests(t *testing.T) {
	out := `guest: installed x
=== RUN   TestA
    a_test.go:1: hello
--- PASS: TestA (0.10s)
=== RUN   TestB
=== RUN   TestB/sub
    b_test.go:2: bad
    --- FAIL: TestB/sub (0.00s)
--- FAIL: TestB (1.00s)
=== RUN   TestC
--- SKIP: TestC (0.00s)
=== RUN   TestD
panic: boom
`
	got := GoTests(out)
	want := []GoTest{
		{Name: "TestA", Result: "PASS", Lines: []string{"    a_test.go:1: hello"}},
		{Name: "TestB", Result: "FAIL", Lines: []string{"=== RUN   TestB/sub", "    b_test.go:2: bad", "    --- FAIL: TestB/sub (0.00s)"}},
		{Name: "TestC", Result: "SKIP"},
		{Name: "TestD", Lines: []string{"panic: boom"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GoTests:\n got %+v\nwant %+v", got, want)
	}
	if !AnyFailed(got) || AnyFailed(got[:1]) || AnyFailed(got[2:3]) {
		t.Error("AnyFailed: wrong")
	}
}

func TestLastLines(t *testing.T) {
	if got := LastLines("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("LastLines = %q", got)
	}
	if got := LastLines("a", 5); got != "a" {
		t.Errorf("LastLines = %q", got)
	}
}

func TestShellJoin(t *testing.T) {
	if got, want := ShellJoin([]string{"a", "TestA|TestB", "it's"}), `'a' 'TestA|TestB' 'it'\''s'`; got != want {
		t.Errorf("ShellJoin = %s, want %s", got, want)
	}
}

func TestAvailable(t *testing.T) {
	found := func(string) (string, error) { return "/usr/bin/qemu-system-x86_64", nil }
	missing := func(string) (string, error) { return "", errors.New("not found") }
	if why := available(found, 0); why != "" {
		t.Errorf("qemu and root: %q, want it available", why)
	}
	if why := available(missing, 0); !strings.Contains(why, "make deps installs it") {
		t.Errorf("no qemu: %q, want what to do", why)
	}
	if why := available(found, 1000); !strings.Contains(why, "needs root") {
		t.Errorf("not root: %q, want why", why)
	}
}

func TestKernelOf(t *testing.T) {
	out := "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n"
	if got, err := kernelOf([]byte(out)); err != nil || got != "linux-image-6.1.0-57-amd64" {
		t.Errorf("kernelOf = %q, %v", got, err)
	}
	for _, bad := range []string{"", "linux-image-amd64\n", "W: Unable to locate package linux-image-amd64\n"} {
		if _, err := kernelOf([]byte(bad)); err == nil || !strings.Contains(err.Error(), "apt-get update") {
			t.Errorf("kernelOf(%q): %v, want an error saying to run apt-get update", bad, err)
		}
	}
}
