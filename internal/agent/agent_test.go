package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
)

func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		info api.PoolInfo
		want string
	}{
		{api.PoolInfo{Name: "shop", State: "running", Desired: 2, Running: 2}, "up ready 100%\n"},
		{api.PoolInfo{Name: "shop", State: "degraded", Desired: 2, Running: 1}, "up ready 50%\n"},
		{api.PoolInfo{Name: "shop", State: "degraded", Desired: 3, Running: 1}, "up ready 33%\n"},
		{api.PoolInfo{Name: "shop", State: "running", Desired: 2, Running: 3}, "up ready 100%\n"},
		// corral scale shop 1 on a pool file of 2: half the host's share.
		{api.PoolInfo{Name: "shop", State: "running", Desired: 1, Running: 1, Capacity: 2}, "up ready 50%\n"},
		{api.PoolInfo{Name: "shop", State: "running", Desired: 4, Running: 4, Capacity: 2}, "up ready 100%\n"},
		{api.PoolInfo{Name: "shop", State: "degraded", Desired: 4, Running: 3, Capacity: 4}, "up ready 75%\n"},
		{api.PoolInfo{Name: "shop", State: "degraded", Desired: 4, Running: 0}, "up ready 0%\n"},
		{api.PoolInfo{Name: "shop", State: "running", Desired: 2, Running: 2, Drained: true}, "up drain #drained: corral undrain shop\n"},
		{api.PoolInfo{Name: "shop", State: "stopped", Desired: 2}, "down #stopped: corral start shop\n"},
		{api.PoolInfo{Name: "shop", State: "stopped", Desired: 2, Drained: true}, "down #stopped: corral start shop\n"},
		{api.PoolInfo{Name: "shop", State: "crash-loop", Desired: 2}, "down #crash-loop: every instance fails; corral status shop\n"},
		{api.PoolInfo{Name: "shop", State: "crash-loop", Desired: 2, Running: 1}, "up ready 50%\n"},
		{api.PoolInfo{Name: "shop", State: "socket-failed", Desired: 2}, "down #socket-failed: journalctl -u shop*.socket\n"},
	} {
		if got := Answer(tc.info); got != tc.want {
			t.Errorf("Answer(%+v) = %q, want %q", tc.info, got, tc.want)
		}
	}
}

type fakePools struct {
	pools []api.PoolInfo
	err   error
}

func (f fakePools) ListPools(context.Context) ([]api.PoolInfo, error) { return f.pools, f.err }

// check connects to addr as HAProxy does, sends send, and returns the line.
func check(t *testing.T, addr, send string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if send != "" {
		c.Write([]byte(send))
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// TestServe: the real protocol over TCP, with every bad input answered
// with one line that says what to fix.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pools := fakePools{pools: []api.PoolInfo{{Name: "shop", State: "degraded", Desired: 2, Running: 1}, {Name: "cart", State: "running", Desired: 1, Running: 1, Drained: true}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var mu sync.Mutex
	var checked []string
	note := func(pool string, drain bool) {
		mu.Lock()
		defer mu.Unlock()
		checked = append(checked, fmt.Sprintf("%s %v", pool, drain))
	}
	go func() { done <- (&Server{Pools: pools, Wait: 300 * time.Millisecond, Checked: note}).Serve(ctx, ln) }()
	addr := ln.Addr().String()
	for _, tc := range []struct{ send, want string }{
		{"shop\n", "up ready 50%\n"},
		{"shop\r\n", "up ready 50%\n"},
		{"cart\n", "up drain #drained: corral undrain cart\n"},
		{"nope\n", "down #corral: no pool nope on this host: corral list\n"},
		{"", "down #corral: no pool name came: set agent-send"},
		{"shop", "up ready 50%\n"}, // no newline: the name is what came before the wait ended
		{"../etc\n", "down #corral: agent-send names no pool: "},
		{strings.Repeat("x", 1000) + "\n", "down #corral: agent-send names no pool: "},
	} {
		got := check(t, addr, tc.send)
		if !strings.HasPrefix(got, tc.want) || strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
			t.Errorf("send %.20q: got %q, want one line starting %q", tc.send, got, tc.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	// The Drainer hears of each answer for a pool of this host.
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(checked, " "); got != "shop false shop false cart true shop false" {
		t.Errorf("Checked heard %q", got)
	}
}

// TestServeCannotLook: when corrald cannot read its pools, the answer
// changes nothing in HAProxy (a description only), rather than marking a
// host down whose pools may serve well.
func TestServeCannotLook(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Server{Pools: fakePools{err: errors.New("the loop is busy")}}).Serve(ctx, ln)
	if got := check(t, ln.Addr().String(), "shop\n"); got != "#corral cannot read its pools: the loop is busy\n" {
		t.Errorf("got %q", got)
	}
}
