//go:build integration

// Package integration tests corral in a real systemd booted in a container,
// with the real .deb installed by apt, real HTTP clients and real signals.
// `make integration` builds the .deb and runs it; CORRAL_DEB names the .deb.
package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
	"github.com/corral-pool/corral/test/wait"
)

// debInBox is where the .deb is copied inside the box.
const debInBox = "/opt/corral-test/corral.deb"

// box is a booted systemd with corral installed.
type box struct {
	*sdbox.Box
	t *testing.T
}

// installed boots a box and installs the .deb with apt, as an operator
// would.
func installed(t *testing.T) *box {
	t.Helper()
	return installedWith(t, sdbox.Options{})
}

// installedWith is installed with the box's options, such as a network
// namespace of its own (Options.NetNS).
func installedWith(t *testing.T, opts sdbox.Options) *box {
	t.Helper()
	deb := os.Getenv("CORRAL_DEB")
	if deb == "" {
		t.Fatal("CORRAL_DEB is not set: run 'make integration', which builds the .deb first")
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatalf("read the .deb: %v (run 'make deb')", err)
	}
	b := &box{sdbox.New(t, opts), t}
	if err := b.WriteFile(debInBox, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b.must("apt-get", "install", "-y", debInBox)
	return b
}

// run runs a command in the box and returns its stdout and error.
func (b *box) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, err := b.Exec(ctx, args...)
	if err != nil {
		return out + errOut, err
	}
	return out, nil
}

// must runs a command in the box and fails the test if it fails.
func (b *box) must(args ...string) string {
	b.t.Helper()
	out, err := b.run(args...)
	if err != nil {
		b.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// show returns one property of a unit.
func (b *box) show(unit, prop string) string {
	out, _ := b.run("systemctl", "show", "-P", prop, unit)
	return strings.TrimSpace(out)
}

// writePool installs a pool file and reloads systemd.
func (b *box) writePool(name, src string) {
	b.t.Helper()
	if err := b.WriteFile("/etc/corral/pools.d/"+name+".toml", []byte(src), 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.must("systemctl", "daemon-reload")
}

// waitJournal waits until the journal of unit has a line containing want.
func (b *box) waitJournal(unit, want string) {
	b.t.Helper()
	waitFor(b.t, unit+" journal has "+strconv.Quote(want), 30*time.Second, func() error {
		logs, _ := b.run("journalctl", "-u", unit, "--no-pager")
		if !strings.Contains(logs, want) {
			return fmt.Errorf("journal:\n%s", logs)
		}
		return nil
	})
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	wait.For(t, what, timeout, cond)
}

// get fetches url on a fresh connection.
func get(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

var instanceRE = regexp.MustCompile(`instance (\d+)`)

// instancesSeen makes n requests on fresh connections and returns which
// instance numbers answered.
func instancesSeen(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < n; i++ {
		in, err := instanceOf(c, url)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		seen[in]++
	}
	return seen
}

// instanceOf asks url from the client and returns the instance that
// answered.
func instanceOf(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err != nil {
		return "", err
	}
	m := instanceRE.FindStringSubmatch(string(body))
	if m == nil {
		return "", fmt.Errorf("answer without an instance number: %q", body)
	}
	return m[1], nil
}

// loadResult counts what a load run saw.
type loadResult struct {
	ok, refused, failed int
	errs                map[string]int
	samples             []string // the first few failures, with their time
}

func (r loadResult) String() string {
	return fmt.Sprintf("%d ok, %d refused, %d other failures %v", r.ok, r.refused, r.failed, r.errs)
}

// load sends requests from conc clients on new connections until ctx is
// done, counting refused connections apart from other failures.
func load(ctx context.Context, url string, conc int) loadResult {
	return loadWith(ctx, url, conc, func() *http.Transport { return &http.Transport{DisableKeepAlives: true} })
}

// loadKeepAlive is load with conc clients that each keep one connection
// alive, as a reverse proxy or a client library does.
func loadKeepAlive(ctx context.Context, url string, conc int) loadResult {
	return loadWith(ctx, url, conc, func() *http.Transport { return &http.Transport{MaxIdleConnsPerHost: 1} })
}

func loadWith(ctx context.Context, url string, conc int, transport func() *http.Transport) loadResult {
	var mu sync.Mutex
	r := loadResult{errs: map[string]int{}}
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := transport()
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			for ctx.Err() == nil {
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				mu.Lock()
				switch {
				case err == nil:
					r.ok++
				case errors.Is(err, syscall.ECONNREFUSED):
					r.refused++
				default:
					r.failed++
					r.errs[errKind(err)]++
					if len(r.samples) < 5 {
						r.samples = append(r.samples, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return r
}

func errKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}
