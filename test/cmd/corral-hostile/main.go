// Command corral-hostile is what the integration suite runs, inside a test
// box, to play a hostile local user against corrald (TestHostileLocalUser):
//
//	corral-hostile socket DURATION   storm the message socket: connect and close,
//	                                 connections that never read, garbage, huge lines
//	corral-hostile bus DURATION      call ListPools and ListInstances as fast as it can
//	corral-hostile latency POOL N DURATION
//	                                 broadcast "ping" to POOL in a loop (as root) and
//	                                 report the latency of replies from N instances
//
// Each prints one line of counts at the end; it never sends anything beyond
// the box's message socket and system bus, and stops after DURATION.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/message"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "corral-hostile:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: corral-hostile socket|bus DURATION, or latency POOL N DURATION")
	}
	d, err := time.ParseDuration(args[len(args)-1])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	switch args[0] {
	case "socket":
		return socket(ctx)
	case "bus":
		return bus(ctx)
	case "latency":
		if len(args) != 4 {
			return fmt.Errorf("usage: corral-hostile latency POOL N DURATION")
		}
		var n int
		if _, err := fmt.Sscan(args[2], &n); err != nil {
			return err
		}
		return latency(ctx, args[1], n)
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

// each runs f in n goroutines until ctx is done.
func each(ctx context.Context, n int, f func()) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				f()
			}
		}()
	}
	return &wg
}

func dial() (net.Conn, error) {
	return net.DialTimeout("unix", message.SocketPath, time.Second)
}

func socket(ctx context.Context) error {
	var storms, held, garbage, huge, errs atomic.Int64
	var mu sync.Mutex
	var keep []net.Conn
	var wgs []*sync.WaitGroup
	// Connect and close at once.
	wgs = append(wgs, each(ctx, 8, func() {
		c, err := dial()
		if err != nil {
			errs.Add(1)
			return
		}
		c.Close()
		storms.Add(1)
	}))
	// Connections that never read, up to 256 kept open.
	wgs = append(wgs, each(ctx, 1, func() {
		mu.Lock()
		full := len(keep) >= 256
		mu.Unlock()
		if full {
			time.Sleep(50 * time.Millisecond)
			return
		}
		c, err := dial()
		if err != nil {
			errs.Add(1)
			return
		}
		mu.Lock()
		keep = append(keep, c)
		mu.Unlock()
		held.Add(1)
	}))
	// Garbage: random bytes, then lines that are not frames.
	wgs = append(wgs, each(ctx, 2, func() {
		c, err := dial()
		if err != nil {
			errs.Add(1)
			return
		}
		b := make([]byte, 4096)
		rand.Read(b)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(b)
		c.Write([]byte("{\"id\":\"x\",\"reply\":\"not yours\"}\nnot json\n\x00\x00\n"))
		c.Close()
		garbage.Add(1)
	}))
	// A line of 1 MiB with no end.
	wgs = append(wgs, each(ctx, 2, func() {
		c, err := dial()
		if err != nil {
			errs.Add(1)
			return
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(make([]byte, 1<<20))
		c.Close()
		huge.Add(1)
	}))
	for _, wg := range wgs {
		wg.Wait()
	}
	for _, c := range keep {
		c.Close()
	}
	fmt.Printf("socket: %d connect-close, %d held without reading, %d garbage, %d huge lines, %d failed connects\n",
		storms.Load(), held.Load(), garbage.Load(), huge.Load(), errs.Load())
	return nil
}

func bus(ctx context.Context) error {
	var calls, slowed, errs atomic.Int64
	var first atomic.Value // the first unexpected error, for the report
	var wg sync.WaitGroup
	for g := range 8 {
		c, err := api.Dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var err error
				switch i % 4 {
				case 0:
					_, err = c.ListPools(ctx)
				case 1, 2:
					_, err = c.ListInstances(ctx, "loud")
				default:
					_, err = c.ListInstances(ctx, fmt.Sprintf("nope%d-%d", g, i))
				}
				calls.Add(1)
				switch {
				case err == nil, ctx.Err() != nil:
				case strings.Contains(err.Error(), "times a second"):
					slowed.Add(1)
				case i%4 != 3: // "no pool" is the answer there
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("bus: %d calls, %d told to slow down, %d failed otherwise\n", calls.Load(), slowed.Load(), errs.Load())
	if e := first.Load(); e != nil {
		fmt.Printf("bus: the first of them: %s\n", e)
	}
	return nil
}

func latency(ctx context.Context, name string, n int) error {
	c, err := api.Dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var took []time.Duration
	bad := 0
	for ctx.Err() == nil {
		t0 := time.Now()
		rs, err := c.Broadcast(ctx, name, "ping", 5*time.Second)
		d := time.Since(t0)
		if ctx.Err() != nil {
			break
		}
		replied := 0
		for _, r := range rs {
			if r.Status == "replied" {
				replied++
			}
		}
		if err != nil || replied != n {
			bad++
		} else {
			took = append(took, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(took) == 0 {
		return fmt.Errorf("latency: no broadcast answered by %d instances (%d failed)", n, bad)
	}
	slices.Sort(took)
	q := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
	fmt.Printf("latency: %d broadcasts to %d instances, p50 %v, p99 %v, max %v, %d failed\n",
		len(took), n, q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond), bad)
	return nil
}
