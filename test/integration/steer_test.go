//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-pool/corral/internal/steer"
	"github.com/corral-pool/corral/test/sdbox"
)

const steerPort = 18320

// steered is a box where corrald can steer in the kernel, with the pool
// shop of n demo instances at steerPort (balance as given, and more of the
// pool file) running.
func steered(t *testing.T, balance string, n int, more string) *box {
	t.Helper()
	b := installedWith(t, sdbox.KernelSteering(sdbox.Options{}))
	b.writePool("shop", fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = %d\nbalance = %q\n%s", steerPort, n, balance, more))
	b.must("corral", "start", "shop")
	idx := make([]string, n)
	for i := range idx {
		idx[i] = fmt.Sprint(i + 1)
	}
	b.waitActive("shop", idx...)
	waitFor(t, "corral status shop: steering on", 30*time.Second, func() error {
		if out, _ := b.run("corral", "status", "shop"); !strings.Contains(out, "steering   on") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	// An instance joins the table ready_delay (1s) after it started.
	time.Sleep(1500 * time.Millisecond)
	return b
}

// fromAddr is a client whose connections come from the address ip and the
// port (0: any), each request on a new connection.
func fromAddr(ip string, port int) *http.Client {
	// SO_REUSEADDR: a door's port may be in TIME_WAIT from an earlier run.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}, Timeout: 5 * time.Second,
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
		}}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}}
}

// TestSteeringCordon: a cordoned instance gets no new connection while its
// keep-alive connections go on being answered, under load with none
// failing; the cordon survives a restart of corrald and shows in corral
// status; the door still reaches it; uncordon brings it back.
func TestSteeringCordon(t *testing.T) {
	b := steered(t, "reuseport", 2, "")
	url := fmt.Sprintf("http://127.0.0.1:%d/", steerPort)
	// Keep-alive clients, each on one connection, and where each landed.
	var kept []*http.Client
	on := map[string]int{}
	for range 16 {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
		i, err := instanceOf(c, url)
		if err != nil {
			t.Fatal(err)
		}
		kept, on[i] = append(kept, c), on[i]+1
	}
	if on["1"] == 0 {
		t.Fatalf("no keep-alive connection on instance 1 among 16: %v", on)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan loadResult, 2)
	go func() { res <- load(ctx, url, 16) }()
	go func() { res <- loadKeepAlive(ctx, url, 16) }()
	time.Sleep(time.Second)
	t0 := time.Now()
	b.must("corral", "cordon", "shop@1")
	t.Logf("corral cordon shop@1 returned after %v", time.Since(t0))
	if seen := instancesSeen(t, url, 100); seen["1"] != 0 {
		t.Errorf("new connections after the cordon reached instance 1: %v", seen)
	}
	for k, c := range kept {
		if _, err := instanceOf(c, url); err != nil {
			t.Errorf("keep-alive client %d after the cordon: %v", k, err)
		}
	}
	if out := b.must("corral", "status", "shop"); !strings.Contains(out, "running, cordoned") {
		t.Errorf("corral status does not show the cordon:\n%s", out)
	}
	// The door reaches the cordoned instance.
	if i, err := instanceOf(fromAddr("127.0.4.1", steer.DoorBase), url); err != nil || i != "1" {
		t.Errorf("through the door of instance 1: instance %q, %v", i, err)
	}
	// corrald restarts: the maps come back from the fd store, the cordon
	// from state.json.
	b.must("systemctl", "restart", "corral.service")
	time.Sleep(time.Second)
	if seen := instancesSeen(t, url, 100); seen["1"] != 0 {
		t.Errorf("after a restart of corrald, new connections reached the cordoned instance: %v", seen)
	}
	if logs := b.must("journalctl", "-u", "corral.service", "--no-pager"); strings.Contains(logs, "steering: shop") {
		t.Errorf("corrald's journal has steering problems:\n%s", grepLines(logs, "steering"))
	}
	b.must("corral", "uncordon", "shop@1")
	waitFor(t, "new connections on instance 1 after uncordon", 10*time.Second, func() error {
		if seen := instancesSeen(t, url, 40); seen["1"] == 0 {
			return fmt.Errorf("%v", seen)
		}
		return nil
	})
	cancel()
	for range 2 {
		if r := <-res; r.failed != 0 || r.refused != 0 || r.ok < 100 {
			t.Errorf("load through cordon, restart and uncordon: %v %v", r, r.samples)
		}
	}
	// The last instance taking connections cannot be cordoned.
	b.must("corral", "cordon", "shop@1")
	if out, err := b.run("corral", "cordon", "shop@2"); err == nil || !strings.Contains(out, "would leave no instance taking new connections") {
		t.Errorf("cordoning the last one: %v\n%s", err, out)
	}
	// steering = false: the program leaves the sockets, and the kernel's
	// hash reaches the cordoned instance again.
	b.writePool("shop", fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = 2\nsteering = false\n", steerPort))
	b.must("corral", "apply")
	waitFor(t, "steering disabled and both instances reached", 15*time.Second, func() error {
		if out, _ := b.run("corral", "status", "shop"); !strings.Contains(out, "steering   disabled") {
			return fmt.Errorf("%s", out)
		}
		if seen := instancesSeen(t, url, 40); len(seen) != 2 {
			return fmt.Errorf("%v", seen)
		}
		return nil
	})
}

// TestSteeringDownInstance: while a killed instance waits for its restart
// (its socket stays with systemd), every new connection goes to the other;
// without steering, those the kernel hashed to it would wait in its queue
// until it is back.
func TestSteeringDownInstance(t *testing.T) {
	b := steered(t, "reuseport", 2, "[restart]\ndelay = \"5s\"\n")
	// In a box with CAP_PERFMON, the programs on the tracepoints tell the
	// steering program of the SIGKILL as it is sent (internal/steer's
	// TestSteerDying shows that part on the kernel).
	if logs := b.must("journalctl", "-u", "corral.service", "--no-pager"); strings.Contains(logs, "only once its process has exited") {
		t.Errorf("corrald could not watch for deaths in the kernel:\n%s", grepLines(logs, "steering"))
	}
	killedOutOfTable(t, b)
}

// TestSteeringNoPerfmon: with CAP_PERFMON taken from corrald by a drop-in
// (or a container without it), steering stays on, says once in the
// journal that it learns of a death only at the exit, and still takes a
// killed instance out of the table then, through its pidfd.
func TestSteeringNoPerfmon(t *testing.T) {
	b := steered(t, "reuseport", 2, "[restart]\ndelay = \"5s\"\n")
	if err := b.WriteFile("/etc/systemd/system/corral.service.d/no-perfmon.conf", []byte("[Service]\nCapabilityBoundingSet=~CAP_PERFMON\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.must("systemctl", "daemon-reload")
	b.must("systemctl", "restart", "corral.service")
	b.waitJournal("corral.service", "only once its process has exited")
	if out := b.must("corral", "status", "shop"); !strings.Contains(out, "steering   on") {
		t.Errorf("corral status without CAP_PERFMON:\n%s", out)
	}
	// The restarted corrald keeps the table; both instances serve.
	url := fmt.Sprintf("http://127.0.0.1:%d/", steerPort)
	waitFor(t, "both instances in the table after corrald's restart", 20*time.Second, func() error {
		if seen := instancesSeen(t, url, 40); seen["1"] == 0 || seen["2"] == 0 {
			return fmt.Errorf("%v", seen)
		}
		return nil
	})
	killedOutOfTable(t, b)
	if logs := b.must("journalctl", "-u", "corral.service", "--no-pager"); strings.Count(logs, "only once its process has exited") != 1 {
		t.Errorf("the journal should say it once:\n%s", grepLines(logs, "steering"))
	}
}

// killedOutOfTable kills shop@2 and checks that, from 100 ms after, every
// new connection goes to shop@1 until shop@2 is back (its restart delay
// must leave time for 60 requests), then that shop@2 rejoins the table.
func killedOutOfTable(t *testing.T, b *box) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/", steerPort)
	b.must("systemctl", "kill", "--signal=SIGKILL", "shop@2.service")
	// corrald watches each main process with a pidfd: its exit takes
	// the instance out of the table within a millisecond or so.
	time.Sleep(100 * time.Millisecond)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t0 := time.Now()
	for k := range 60 {
		if i, err := instanceOf(c, url); err != nil || i != "1" {
			t.Fatalf("request %d, %v after the kill: instance %q, %v", k, time.Since(t0)+100*time.Millisecond, i, err)
		}
	}
	waitFor(t, "instance 2 back in the table after its restart", 20*time.Second, func() error {
		if seen := instancesSeen(t, url, 40); seen["2"] == 0 {
			return fmt.Errorf("%v", seen)
		}
		return nil
	})
}

// TestSteeringSticky: with balance = "sticky", every connection from one
// client address reaches the same instance; stopping an instance moves
// only its addresses, and they come back with it.
func TestSteeringSticky(t *testing.T) {
	b := steered(t, "sticky", 3, "")
	url := fmt.Sprintf("http://127.0.0.1:%d/", steerPort)
	look := func() (map[string]string, error) { return homes(t, url, "127.0.5.", 10) }
	where := func() map[string]string {
		out, err := look()
		if err != nil {
			t.Error(err)
		}
		return out
	}
	before := where()
	used := map[string]int{}
	for _, i := range before {
		used[i]++
	}
	if len(used) != 3 {
		t.Errorf("30 addresses on %d of 3 instances: %v", len(used), used)
	}
	b.must("systemctl", "stop", "shop@2.service")
	time.Sleep(time.Second)
	during := where()
	for ip, i := range before {
		if i != "2" && during[ip] != i {
			t.Errorf("%s moved from %s to %s when instance 2 stopped", ip, i, during[ip])
		}
		if during[ip] == "2" {
			t.Errorf("%s still reached the stopped instance 2", ip)
		}
	}
	b.must("systemctl", "start", "shop@2.service")
	waitFor(t, "the addresses of instance 2 back on it", 15*time.Second, func() error { return backHome(look, before) })
}

// homes returns the instance that each of 30 client addresses, PREFIX1
// to PREFIX30, reached with n new connections to url, or an error when one
// address reached two (while the table changes, as an instance comes
// back, that may happen once).
func homes(t *testing.T, url, prefix string, n int) (map[string]string, error) {
	t.Helper()
	out := map[string]string{}
	for a := 1; a <= 30; a++ {
		ip := fmt.Sprintf("%s%d", prefix, a)
		c := fromAddr(ip, 0)
		for k := range n {
			i, err := instanceOf(c, url)
			if err != nil {
				t.Fatalf("%s: %v", ip, err)
			}
			if k > 0 && i != out[ip] {
				return out, fmt.Errorf("%s reached instances %s and %s", ip, out[ip], i)
			}
			out[ip] = i
		}
	}
	return out, nil
}

// backHome says which address look finds away from its instance in before.
func backHome(look func() (map[string]string, error), before map[string]string) error {
	after, err := look()
	if err != nil {
		return err
	}
	for ip, i := range before {
		if after[ip] != i {
			return fmt.Errorf("%s on %s, was %s", ip, after[ip], i)
		}
	}
	return nil
}

// TestSteeringSpare: with spares = 1 the spare, shop@3, gets no new
// connection while shop@1 and shop@2 serve, and corral list says it is a
// spare; when shop@2 is killed, the spare takes its place at once, with
// exactly its sticky clients, the others staying where they were, and
// corral list says so; when shop@2 is back, they return to it.
func TestSteeringSpare(t *testing.T) {
	b := steered(t, "sticky", 3, "spares = 1\n[restart]\ndelay = \"5s\"\n")
	url := fmt.Sprintf("http://127.0.0.1:%d/", steerPort)
	look := func() (map[string]string, error) { return homes(t, url, "127.0.6.", 5) }
	where := func() map[string]string {
		out, err := look()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// spareLine is shop@3's line of corral status.
	spareLine := func() string {
		out := b.must("corral", "status", "shop")
		return grepLines(out, "shop@3")
	}
	if l := spareLine(); !strings.Contains(l, "running, spare") || strings.Contains(l, "spare for") {
		t.Errorf("corral status does not show shop@3 as a waiting spare: %s", l)
	}
	before := where()
	used := map[string]int{}
	for _, i := range before {
		used[i]++
	}
	if used["3"] != 0 || used["1"] == 0 || used["2"] == 0 {
		t.Fatalf("30 addresses with shop@3 a spare: %v", used)
	}
	b.must("systemctl", "kill", "--signal=SIGKILL", "shop@2.service")
	time.Sleep(100 * time.Millisecond)
	during := where()
	for ip, i := range before {
		want := i
		if i == "2" {
			want = "3"
		}
		if during[ip] != want {
			t.Errorf("%s on %s while shop@2 is down, was on %s: want %s", ip, during[ip], i, want)
		}
	}
	// corrald keeps its answers to status a moment.
	waitFor(t, "corral status: shop@3 standing for shop@2", 5*time.Second, func() error {
		if l := spareLine(); !strings.Contains(l, "spare for shop@2") {
			return fmt.Errorf("%s", b.must("corral", "status", "shop"))
		}
		return nil
	})
	waitFor(t, "the addresses of shop@2 back on it", 20*time.Second, func() error { return backHome(look, before) })
	if l := spareLine(); !strings.Contains(l, "running, spare") || strings.Contains(l, "spare for") {
		t.Errorf("corral status after shop@2 came back: %s", l)
	}
}

// TestSteeringFallback: where corrald cannot load BPF (a container without
// CAP_BPF), the pool runs as plain reuseport, corral status and the
// journal say why, and corral cordon refuses with the reason.
func TestSteeringFallback(t *testing.T) {
	b := installed(t)
	b.writePool("shop", fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = 2\nspares = 1\n", steerPort))
	b.must("corral", "start", "shop")
	b.waitActive("shop", "1", "2")
	url := fmt.Sprintf("http://127.0.0.1:%d/", steerPort)
	// The spare takes connections as the other instance does.
	if seen := instancesSeen(t, url, 40); len(seen) != 2 {
		t.Errorf("plain reuseport: %v", seen)
	}
	if out := b.must("corral", "status", "shop"); strings.Contains(out, "spare") {
		t.Errorf("corral status shows a spare without steering:\n%s", out)
	}
	b.waitJournal("corral.service", "spares needs steering in the kernel to keep them out of rotation")
	if out := b.must("corral", "status", "shop"); !strings.Contains(out, "steering   off: steering in the kernel is not available") {
		t.Errorf("corral status:\n%s", out)
	}
	out, err := b.run("corral", "cordon", "shop@1")
	if err == nil || !strings.Contains(out, "steering in the kernel is off on this host") {
		t.Errorf("corral cordon without steering: %v\n%s", err, out)
	}
	if logs := b.must("journalctl", "-u", "corral.service", "--no-pager"); strings.Count(logs, "steering in the kernel is off") != 1 {
		t.Errorf("the journal should say once that steering is off:\n%s", grepLines(logs, "steering"))
	}
}
