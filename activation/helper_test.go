package activation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as a worker (the helper-process idiom):
// with ACTIVATION_TEST_HELPER set, TestMain runs that helper instead of the
// tests, in a process of its own whose fds 3, 4, … and LISTEN_* are set up
// as systemd sets them up.
func TestMain(m *testing.M) {
	switch mode := os.Getenv("ACTIVATION_TEST_HELPER"); mode {
	case "":
		os.Exit(m.Run())
	case "fds":
		os.Exit(helperFDs())
	case "serve":
		os.Exit(helperServe())
	default:
		fmt.Fprintf(os.Stderr, "unknown ACTIVATION_TEST_HELPER=%q\n", mode)
		os.Exit(2)
	}
}

// listenPIDFor says whose pid the helper gets in LISTEN_PID.
type listenPIDFor int

const (
	helperPID listenPIDFor = iota // its own, as systemd does
	parentPID                     // the test's: the fds are not the helper's
)

// startHelper starts the test binary as a helper in mode, passing files as
// fds 3, 4, … and env on top of the test's environment. LISTEN_PID is set
// the way systemd and systemd-socket-activate set it, in the new process
// before exec: a shell exports its own pid and execs the binary, which keeps
// that pid. No variable of the package's bends the LISTEN_PID check.
func startHelper(t *testing.T, mode string, pid listenPIDFor, files []*os.File, env ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	script := `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`
	if pid == parentPID {
		script = `LISTEN_PID=` + strconv.Itoa(os.Getpid()) + `; export LISTEN_PID; exec "$0" "$@"`
	}
	cmd := exec.CommandContext(t.Context(), "/bin/sh", "-c", script, os.Args[0], "-test.run=^$")
	// Under -race a process sleeps 1s at exit, for late reports, unless told not to.
	cmd.Env = append(os.Environ(), "ACTIVATION_TEST_HELPER="+mode, "GORACE=atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = files
	cmd.Stderr = &testWriter{t: t, prefix: "helper: "}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout
}

// testWriter logs a helper's stderr in the test's log.
type testWriter struct {
	t      *testing.T
	prefix string
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s%s", w.prefix, p)
	return len(p), nil
}

// helperReport is what the "fds" helper found.
type helperReport struct {
	FDs         []helperFD
	Env         map[string]string // LISTEN_* after reading, "<unset>" if unset
	Names       map[string]int    // Listeners: how many per name
	AllErr      string            // from AllListeners
	ListenerErr string            // from Listener("nope")
	Same        bool              // Listener returns what FDs returned
}

type helperFD struct {
	Num      int
	Name     string
	Kind     string
	Listener bool
	Cloexec  bool
}

// helperFDs reports what the package makes of the inherited fds as JSON on
// stdout, then accepts one connection on each listener and writes the
// listener's name to it.
func helperFDs() int {
	fds, err := FDs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var r helperReport
	r.Env = map[string]string{}
	for _, k := range listenEnv {
		v, ok := os.LookupEnv(k)
		if !ok {
			v = "<unset>"
		}
		r.Env[k] = v
	}
	for _, f := range fds {
		hf := helperFD{Num: f.Num, Name: f.Name, Kind: f.kind, Listener: f.Listener != nil}
		fd := uintptr(f.Num)
		if f.Listener != nil {
			sc, err := f.Listener.(syscall.Conn).SyscallConn()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			sc.Control(func(u uintptr) { fd = u })
		}
		flags, err := unix.FcntlInt(fd, unix.F_GETFD, 0)
		hf.Cloexec = err == nil && flags&unix.FD_CLOEXEC != 0
		r.FDs = append(r.FDs, hf)
	}
	m, _ := Listeners()
	r.Names = map[string]int{}
	for name, ls := range m {
		r.Names[name] = len(ls)
	}
	if _, err := AllListeners(); err != nil {
		r.AllErr = err.Error()
	}
	if _, err := Listener("nope"); err != nil {
		r.ListenerErr = err.Error()
	}
	if len(fds) > 0 && fds[0].Listener != nil {
		l, err := Listener(fds[0].Name)
		r.Same = err == nil && l == fds[0].Listener
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, f := range fds {
		if f.Listener == nil {
			continue
		}
		c, err := f.Listener.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(c, f.Name)
		c.Close()
	}
	return 0
}

// helperServe serves like a worker: GET /slow reports STATUS=handling and
// answers after HELPER_DELAY or when its request is cancelled. The exit
// status is 0 when Serve returns nil, 3 for ErrDrainTimeout, 1 otherwise.
func helperServe() int {
	delay, err := time.ParseDuration(os.Getenv("HELPER_DELAY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		Status(r.Context(), "handling")
		select {
		case <-time.After(delay):
			fmt.Fprintln(w, "done")
		case <-r.Context().Done():
		}
	})
	err = Serve(context.Background(), &http.Server{Handler: mux})
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrDrainTimeout):
		fmt.Fprintln(os.Stderr, err)
		return 3
	default:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
}

// listenerFile returns a copy of a fresh listener's fd to pass to a helper,
// and the listener's address.
func listenerFile(t *testing.T, network, addr string) (*os.File, net.Addr) {
	t.Helper()
	l := listen(t, network, addr)
	f, err := l.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, l.Addr()
}

func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode()
	default:
		t.Fatalf("helper: %v", err)
		return -1
	}
}
