// Command corral-sandbox is the program behind `make run`: it boots a throwaway systemd in a
// container (package sdbox), installs the corral .deb in it, starts the demo pool and leaves
// it running until Ctrl-C, so you can try corral on a machine where systemd is not PID 1.
//
//	sudo go run ./test/cmd/corral-sandbox [-deb dist/corral_0.1.0_amd64.deb]
//
// Steps: boot (bounded by -boot-timeout), copy the .deb into the box under
// /opt/corral-sandbox/, `apt-get install -y` it, `systemctl start app.target`, wait until
// -url answers (bounded by -wait), print the answer and how to look inside. SIGINT or SIGTERM
// powers the box off and removes it; everything the sandbox changed goes with it.
//
// The container shares this host's network: the demo listens on 127.0.0.1:8080 (the demo
// pool's listen address, packaging/app.toml) of this host, which must be free.
//
// Exit status: 0 after a clean power-off on SIGINT/SIGTERM; 1 if something failed (the last
// line on stderr says what, and what to do); 2 for bad flags; 130 if interrupted before the
// demo was up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

const (
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130

	// debGlob finds the packages `make deb` builds (packaging/deb.mk).
	debGlob = "dist/corral_*_amd64.deb"
	// boxDebDir is where the .deb goes inside the box (not /tmp: nspawn mounts a tmpfs there).
	boxDebDir = "/opt/corral-sandbox"
)

// errInterrupted: SIGINT or SIGTERM came before the demo was up.
var errInterrupted = errors.New("interrupted; the sandbox is powered off and removed")

type config struct {
	deb         string        // path of the .deb on the host; "" = newest debGlob
	url         string        // the demo's URL, reachable from the host
	bootTimeout time.Duration // bound of the boot
	wait        time.Duration // bound of the wait for url to answer
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(exitUsage) // flag has printed the error and the usage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one kills at once (the default action). The box then
	// powers off by itself (nspawn's parent-death signal) and the next run removes its mounts.
	context.AfterFunc(ctx, stop)
	err = run(ctx, cfg, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, errInterrupted):
		fmt.Fprintf(os.Stderr, "corral-sandbox: %v\n", err)
		os.Exit(exitInterrupted)
	case err != nil:
		fmt.Fprintf(os.Stderr, "corral-sandbox: %v\n", err)
		os.Exit(exitFailure)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("corral-sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.deb, "deb", "", "the corral .deb to install (default: the newest "+debGlob+", by modification time)")
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:8080/", "the demo's URL; its port must be free on this host")
	fs.DurationVar(&cfg.bootTimeout, "boot-timeout", 60*time.Second, "how long the container may take to boot")
	fs.DurationVar(&cfg.wait, "wait", 30*time.Second, "how long the demo may take to answer after app.target started")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments %q", fs.Args())
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return config{}, err
	}
	return cfg, nil
}

// run brings the sandbox up, waits for ctx to end and powers the sandbox off. What it prints
// on stdout is the guide; on failure, it prints details (command output) on stderr and
// returns a one-line error.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	deb, err := findDeb(cfg.deb)
	if err != nil {
		return err
	}
	target, err := url.Parse(cfg.url)
	if err != nil || target.Host == "" {
		return fmt.Errorf("-url %q: want a URL such as http://127.0.0.1:8080/", cfg.url)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root (it mounts an overlay and runs systemd-nspawn): run it with sudo")
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		return errors.New("systemd-nspawn not found: run 'apt-get install systemd-container'")
	}
	if err := checkPortFree(target.Host); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "booting systemd in a container...\n")
	bootCtx, cancel := context.WithTimeout(ctx, cfg.bootTimeout)
	start := time.Now()
	box, err := sdbox.Boot(bootCtx, sdbox.Options{Log: stderr})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return fmt.Errorf("boot: %w", err)
	}
	bootTime := time.Since(start)
	defer func() {
		fmt.Fprintf(stdout, "powering the sandbox off...\n")
		if cerr := box.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("power off: %w", cerr))
		}
	}()
	fmt.Fprintf(stdout, "booted in %s; the box's systemd is pid %d on this host\n", bootTime.Round(time.Millisecond), box.PID())

	fail := func(err error) error {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	if err := install(ctx, box, deb, stdout, stderr); err != nil {
		return fail(err)
	}
	if err := startApp(ctx, box, stdout, stderr); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "waiting for %s to answer...\n", cfg.url)
	body, err := waitHTTP(ctx, box, cfg.url, cfg.wait)
	if err != nil {
		showUnits(box, stderr)
		return fail(err)
	}
	printGuide(stdout, box, filepath.Base(deb), target, body)

	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout)
		return nil
	case <-box.Done():
		return errors.New("the sandbox's systemd-nspawn exited on its own (was it powered off from inside?)")
	}
}

// findDeb returns the .deb to install: the one given, or the newest debGlob.
func findDeb(given string) (string, error) {
	if given != "" {
		fi, err := os.Stat(given)
		if err != nil {
			return "", fmt.Errorf("-deb %s: %w", given, errors.Unwrap(err))
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("-deb %s: not a regular file", given)
		}
		return given, nil
	}
	deb, err := newest(debGlob)
	if err != nil {
		return "", err
	}
	if deb == "" {
		return "", fmt.Errorf("no package matches %s: build one with 'make deb', or pass -deb PATH", debGlob)
	}
	return deb, nil
}

// newest returns the most recently modified file matching pattern ("" if none); on a tie, the
// last name in lexical order.
func newest(pattern string) (string, error) {
	names, err := filepath.Glob(pattern)
	if err != nil {
		return "", err
	}
	slices.Sort(names)
	best, bestTime := "", time.Time{}
	for _, n := range names {
		fi, err := os.Stat(n)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if best == "" || !fi.ModTime().Before(bestTime) {
			best, bestTime = n, fi.ModTime()
		}
	}
	return best, nil
}

// checkPortFree fails if something on this host already listens on hostport: the box shares
// the host's network, so the demo could not bind it, or we would talk to someone else.
func checkPortFree(hostport string) error {
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		hostport = net.JoinHostPort(hostport, "80")
	}
	l, err := net.Listen("tcp", hostport)
	if err != nil {
		_, port, _ := net.SplitHostPort(hostport)
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s is already in use on this host, and the sandbox shares the host's network: stop what listens there (ss -ltnp 'sport = :%s')", hostport, port)
		}
		return fmt.Errorf("cannot listen on %s to check that it is free: %w", hostport, err)
	}
	return l.Close()
}

// install copies deb into the box and installs it with apt-get.
func install(ctx context.Context, box *sdbox.Box, deb string, stdout, stderr io.Writer) error {
	data, err := os.ReadFile(deb)
	if err != nil {
		return fmt.Errorf("read %s: %w", deb, err)
	}
	inBox := boxDebDir + "/" + filepath.Base(deb)
	if err := box.WriteFile(inBox, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "installing %s (apt-get install -y %s)...\n", filepath.Base(deb), inBox)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := box.Command(ctx, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", inBox)
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Fprintf(stderr, "--- apt-get install output\n%s", out)
		return fmt.Errorf("apt-get install -y %s in the sandbox failed (%v); its output is above", inBox, err)
	}
	return nil
}

// startApp starts the demo pool.
func startApp(ctx context.Context, box *sdbox.Box, stdout, stderr io.Writer) error {
	fmt.Fprintf(stdout, "starting app.target...\n")
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// The package's postinst reloads systemd (and so reruns the generator); once more is
	// cheap and makes sure the app pool's units exist.
	for _, args := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "start", "app.target"}} {
		if _, _, err := box.Exec(ctx, args...); err != nil {
			fmt.Fprintf(stderr, "--- %v\n", err)
			showUnits(box, stderr)
			return fmt.Errorf("%s in the sandbox failed; details are above", strings.Join(args, " "))
		}
	}
	return nil
}

// waitHTTP gets url until it answers 200, for at most wait, and returns the body.
func waitHTTP(ctx context.Context, box *sdbox.Box, url string, wait time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(body), nil
			}
			last = fmt.Sprintf("%s: %.200q", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s did not answer 200 OK within %s (last: %s); see 'journalctl -u app@*' inside", url, wait, last)
		case <-box.Done():
			return "", errors.New("the sandbox's systemd-nspawn exited while waiting for the demo")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// showUnits prints the state of the demo's units, what the generator wrote and the units'
// recent journal, to explain a failure.
func showUnits(box *sdbox.Box, w io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"systemctl", "status", "--no-pager", "--lines=0", "app.target", "app*.socket", "app@*.service"},
		{"ls", "/run/systemd/generator/"}, // corral-generator's output (docs/design.md)
		{"journalctl", "--no-pager", "-n", "40", "-u", "app*.socket", "-u", "app@*.service"},
	} {
		out, _, _ := box.Exec(ctx, args...)
		fmt.Fprintf(w, "--- %s\n%s", strings.Join(args, " "), out)
	}
}

func printGuide(w io.Writer, box *sdbox.Box, deb string, target *url.URL, body string) {
	cpu := *target
	cpu.Path = strings.TrimSuffix(cpu.Path, "/") + "/cpu"
	cpu.RawQuery = "ms=50"
	pid := box.PID()
	fmt.Fprintf(w, `
corral sandbox is up: a throwaway systemd in a container, %s installed, app.target started.

%s answered:
%s
Try it from this host (the sandbox shares its network):
  curl %s
  curl '%s'

Look inside:
  nsenter -t %d -a bash                  a shell in the sandbox, then for example
      systemctl status app.target 'app@*'
      journalctl -u 'app@*' -f
  nsenter -t %d -a journalctl -u 'app@*' --no-pager     the same without a shell
  %s                 its root, seen from this host

Ctrl-C powers the sandbox off and throws it away, with everything changed inside.
`, deb, target, indent(strings.TrimRight(body, "\n"), "  "), target, cpu.String(), pid, pid, box.Root())
}

func indent(s, prefix string) string {
	if s == "" {
		return prefix + "(empty body)\n"
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix) + "\n"
}
