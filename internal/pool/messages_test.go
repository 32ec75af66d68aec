package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/message"
	"github.com/corral-pool/corral/internal/relay"
)

// fakeMessenger records the targets it is given and reports them
// delivered, or not with their Down reason.
type fakeMessenger struct {
	mu        sync.Mutex
	got       []string
	connected map[int]bool
}

func (m *fakeMessenger) results(ts []relay.Target) []api.MessageResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []api.MessageResult
	for _, t := range ts {
		d := fmt.Sprintf("%s@%d", t.Pool, t.Index)
		if t.Down != "" {
			d += " down: " + t.Down
		}
		if t.Starting {
			d += " starting"
		}
		m.got = append(m.got, d)
		out = append(out, api.MessageResult{Pool: t.Pool, Index: t.Index, Status: api.Delivered})
	}
	return out
}

func (m *fakeMessenger) Send(_ context.Context, ts []relay.Target, _ string, _ time.Duration) ([]api.MessageResult, error) {
	return m.results(ts), nil
}

func (m *fakeMessenger) Broadcast(_ context.Context, _ string, ts []relay.Target, _ string, _ time.Duration) ([]api.MessageResult, error) {
	return m.results(ts), nil
}

func (m *fakeMessenger) Connected(context.Context, string) (map[int]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int]bool{}
	for i, on := range m.connected {
		out[i] = on
	}
	return out, nil
}

func (m *fakeMessenger) connect(i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.connected[i] = true
}

func (m *fakeMessenger) take() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := strings.Join(m.got, "\n")
	m.got = nil
	return s
}

// TestMessageTargets: a broadcast addresses the instances that run or
// should, says why the others cannot get it, leaves out held ones; send
// refuses instances the pool does not have.
func TestMessageTargets(t *testing.T) {
	running := func(n string) Unit {
		return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now()}
	}
	starting := running("app@2.service")
	starting.ActiveState, starting.SubState = "activating", "start"
	sd := &fakeSystemd{obs: Observed{
		Target:    running("app.target"),
		Sockets:   map[int]Unit{1: running("app@1.socket"), 2: running("app@2.socket")},
		Instances: map[int]Unit{1: running("app@1.service"), 2: starting},
	}}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	m := &fakeMessenger{connected: map[int]bool{7: true}}
	c.useMessenger(m, func(_ context.Context, pid uint32) (string, error) {
		switch pid {
		case 1:
			return "app@1.service", nil
		case 2:
			return "getty@tty1.service", nil
		}
		return "", errors.New("no unit")
	})
	ctx := context.Background()
	waitFor := func(want string) {
		t.Helper()
		var got string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := c.Broadcast(ctx, "app", "x", 0); err != nil {
				t.Fatal(err)
			}
			if got = m.take(); got == want {
				return
			}
		}
		t.Fatalf("broadcast targets:\n%s\nwant:\n%s", got, want)
	}
	waitFor("app@1\napp@2 starting")

	// ListInstances says which workers are connected for messages.
	messages := func() string {
		t.Helper()
		is, err := c.ListInstances(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, in := range is {
			s = append(s, fmt.Sprintf("%d:%v", in.Index, in.Messages))
		}
		return strings.Join(s, " ")
	}
	if got := messages(); got != "1:false 2:false" {
		t.Errorf("ListInstances: messages %s, want 1:false 2:false", got)
	}
	m.connect(1)
	if got := messages(); got != "1:true 2:false" {
		t.Errorf("ListInstances after app@1 connected: messages %s, want 1:true 2:false", got)
	}

	if _, err := c.Broadcast(ctx, "nope", "x", 0); !errors.Is(err, api.ErrNoPool) {
		t.Errorf("Broadcast(nope) = %v, want ErrNoPool", err)
	}
	if _, err := c.Send(ctx, "app", "x", 0); !errors.Is(err, api.ErrNoInstance) {
		t.Errorf("Send(app) = %v, want ErrNoInstance", err)
	}
	if _, err := c.Send(ctx, "app@9", "x", 0); !errors.Is(err, api.ErrNoInstance) || !strings.Contains(err.Error(), "'corral scale app 9'") {
		t.Errorf("Send(app@9) = %v, want ErrNoInstance saying how to add it", err)
	}
	if _, err := c.Send(ctx, "app@7", "x", 0); err != nil || m.take() != "app@7" {
		t.Errorf("Send(app@7), connected above the count: %v", err)
	}

	// Scaled to 3: corrald starts app@3; then app@2 fails.
	if _, err := c.Scale(ctx, "app", "3"); err != nil {
		t.Fatal(err)
	}
	waitFor("app@1\napp@2 starting\napp@3 starting")
	// Held by the operator: left out of a broadcast; a send says why.
	if err := c.Stop(ctx, "app@3"); err != nil {
		t.Fatal(err)
	}
	waitFor("app@1\napp@2 starting")
	if _, err := c.Send(ctx, "app@3", "x", 0); err != nil {
		t.Fatal(err)
	}
	if got, want := m.take(), "app@3 down: it is stopped by the operator: 'corral start app@3' starts it"; got != want {
		t.Errorf("send to a held instance: %q, want %q", got, want)
	}

	// Who connects: only the instances of known pools.
	if p, i, err := c.Worker(ctx, 1); p != "app" || i != 1 || err != nil {
		t.Errorf("Worker(1) = %s, %d, %v", p, i, err)
	}
	for _, pid := range []int32{2, 3} {
		if _, _, err := c.Worker(ctx, pid); err == nil {
			t.Errorf("Worker(%d): no error", pid)
		}
	}
	// The bus's callers: a worker, an operator's process, and one that
	// cannot be looked up, which is refused rather than taken for an
	// operator (it failed open).
	if got, err := c.Pool(ctx, 1); got != "app" || err != nil {
		t.Errorf("callerPool(1) = %q, %v", got, err)
	}
	if got, err := c.Pool(ctx, 2); got != "" || err != nil {
		t.Errorf("callerPool(2) = %q, %v, want an operator", got, err)
	}
	for _, pid := range []uint32{0, 3} {
		if _, err := c.Pool(ctx, pid); err == nil {
			t.Errorf("callerPool(%d): no error, want a refusal", pid)
		}
	}
}

// TestMessageErrorIsBadMessage: a text the relay cannot carry (too large,
// not UTF-8, empty) reaches the caller as the API's BadMessage, with the
// relay's words; any other error goes as it is.
func TestMessageErrorIsBadMessage(t *testing.T) {
	for _, sentinel := range []error{message.ErrTooLarge, message.ErrNotText, message.ErrEmpty} {
		relayErr := fmt.Errorf("message %w", fmt.Errorf("%w: what went wrong", sentinel))
		_, err := messageError(nil, relayErr)
		if !errors.Is(err, api.ErrBadMessage) || !strings.Contains(err.Error(), "what went wrong") {
			t.Errorf("%v: got %v, want BadMessage with the relay's words", sentinel, err)
		}
		if name := api.ErrorName(err); name != "org.corral.Corral1.Error.BadMessage" {
			t.Errorf("%v travels as %s", sentinel, name)
		}
	}
	other := errors.New("ctx done")
	if _, err := messageError(nil, other); err != other {
		t.Errorf("another error became %v", err)
	}
}
