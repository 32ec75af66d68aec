package pool

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
)

// deadlineSystemd records how long each restart may take.
type deadlineSystemd struct {
	fakeSystemd
	mu   sync.Mutex
	left []time.Duration
}

func (d *deadlineSystemd) Restart(ctx context.Context, u string) error {
	dl, ok := ctx.Deadline()
	d.mu.Lock()
	if ok {
		d.left = append(d.left, time.Until(dl))
	} else {
		d.left = append(d.left, -1)
	}
	d.mu.Unlock()
	return d.record("restart", u)
}

// TestReloadHasNoCallTimeout: a reload over the bus is bounded by each
// restart's JobTimeout, not by the 5-minute call timeout, which cut large
// pools in half during a package upgrade.
func TestReloadHasNoCallTimeout(t *testing.T) {
	sd := &deadlineSystemd{fakeSystemd: fakeSystemd{obs: runningApp().obs}}
	const job = 20 * time.Minute // longer than callTimeout
	cfg := testConfig(t, "readiness = \"notify\"\n")
	cfg.JobTimeout = job
	c := New(cfg, sd)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		is, _ := NewStatus(c, nil, nil).ListInstances(ctx, "app")
		if len(is) == 2 && is[1].ActiveState == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator does not see app's 2 instances: %+v", is)
		}
	}
	s := &server{parts: Assemble(c, nil, nil)}
	if err := s.reload("app", nil); err != nil {
		t.Fatalf("reload: %v", err)
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if len(sd.left) != 2 {
		t.Fatalf("%d restarts, want 2", len(sd.left))
	}
	for _, l := range sd.left {
		if l < job-time.Minute {
			t.Errorf("a restart had %v left, want its JobTimeout (%v): the call's timeout cut it", l, job)
		}
	}
}

// TestDeployOverTheBus: Deploy and Rollback run with no call timeout; a
// deploy that was rolled back is a reply with rolled_back, the instance,
// the reason and the log, not a D-Bus error, so that the report reaches
// the caller; any other failure is a D-Bus error under its name.
func TestDeployOverTheBus(t *testing.T) {
	d, _, link, rel := newDeployTest(t, "")
	s := &server{parts: Parts{Deployer: d}}
	var deadlines []bool
	deploy := func(dir string) (api.DeployReport, error) {
		return s.deploy(func(ctx context.Context) (api.DeployReport, error) {
			_, ok := ctx.Deadline()
			deadlines = append(deadlines, ok)
			if dir == "" {
				return d.Rollback(ctx, "app", nil)
			}
			return d.Deploy(ctx, "app", dir, nil)
		})
	}

	from, to, rolledBack, instance, reason, log, e := deployReply(deploy(filepath.Join(rel, "v2")))
	if e != nil || rolledBack || filepath.Base(from) != "v1" || filepath.Base(to) != "v2" || instance != 0 || reason != "" || log != "" {
		t.Errorf("a good deploy replied (%q, %q, %v, %d, %q, %q), %v", from, to, rolledBack, instance, reason, log, e)
	}
	from, to, rolledBack, instance, reason, log, e = deployReply(deploy(filepath.Join(rel, "crash3")))
	if e != nil {
		t.Errorf("a deploy rolled back replied with the error %s: %v; want its report", e.Name, e.Body)
	}
	if !rolledBack || filepath.Base(from) != "v2" || filepath.Base(to) != "crash3" || instance != 3 ||
		!strings.Contains(reason, "crashed after it was ready") || log != "journalctl -u app@3.service" {
		t.Errorf("a deploy rolled back replied (%q, %q, %v, %d, %q, %q)", from, to, rolledBack, instance, reason, log)
	}
	if l := linkOn(t, link); l != "v2" {
		t.Errorf("the link points at %s after the rollback", l)
	}
	if _, to, rolledBack, _, _, _, e = deployReply(deploy("")); e != nil || rolledBack || filepath.Base(to) != "v1" {
		t.Errorf("Rollback replied to %q, rolled back %v, %v", to, rolledBack, e)
	}
	for i, dl := range deadlines {
		if dl {
			t.Errorf("call %d had a deadline: a deploy over the bus has no call timeout", i+1)
		}
	}

	// The errors a deploy refuses with travel under their names.
	end, _ := d.rl.begin("app")
	_, busy := deploy(filepath.Join(rel, "v2"))
	end()
	_, noPool := d.Deploy(context.Background(), "nope", filepath.Join(rel, "v2"), nil)
	for _, c := range []struct {
		rep  api.DeployReport
		err  error
		name string
	}{
		{api.DeployReport{}, busy, "org.corral.Corral1.Error.Busy"},
		{api.DeployReport{}, noPool, "org.corral.Corral1.Error.NoSuchPool"},
		{api.DeployReport{}, fmt.Errorf("%w: app has no release link", api.ErrNoRelease), "org.corral.Corral1.Error.NoRelease"},
		{api.DeployReport{}, fmt.Errorf("%w: release relative/v2 is not an absolute path", api.ErrBadArgument), "org.corral.Corral1.Error.BadArgument"},
		// Rolling back failed too: no report to trust, an error.
		{api.DeployReport{Instance: 2}, errors.New("app@2: crashed; rolling back to /r/1 failed too"), "org.corral.Corral1.Error.Failed"},
		// A report that does not say rolled back is never sent as one.
		{api.DeployReport{}, fmt.Errorf("%w: app@2", api.ErrRolledBack), "org.corral.Corral1.Error.RolledBack"},
	} {
		_, _, _, _, _, _, e := deployReply(c.rep, c.err)
		if e == nil || e.Name != c.name {
			t.Errorf("%v: replied %v, want the error %s", c.err, e, c.name)
			continue
		}
		if back := api.FromErrorName(e.Name, fmt.Sprint(e.Body...)); back.Error() != c.err.Error() {
			t.Errorf("%v: came back as %q", c.err, back)
		}
	}
}

// TestReadRate: a user gets readBurst reads at once, then readRate a
// second; each user has their own; an answer over the rate is held a moment
// (slowDown), at most maxSlowed at once.
func TestReadRate(t *testing.T) {
	s := &callers{slowed: make(chan struct{}, 1)}
	for i := range readBurst {
		if !s.readAllowed(1000) {
			t.Fatalf("read %d of the burst refused", i)
		}
	}
	if s.readAllowed(1000) {
		t.Error("a read beyond the burst allowed")
	}
	if !s.readAllowed(1001) {
		t.Error("another user's read refused")
	}
	t0 := time.Now()
	s.slowDown()
	if d := time.Since(t0); d < slowDownFor {
		t.Errorf("slowDown held the answer %v, want %v", d, slowDownFor)
	}
	s.slowed <- struct{}{} // full: the next answer goes at once
	t0 = time.Now()
	s.slowDown()
	if d := time.Since(t0); d >= slowDownFor {
		t.Errorf("slowDown with every slot taken held the answer %v", d)
	}
}
