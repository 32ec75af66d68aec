// Command msgload measures corral's messages from inside the box the
// benchmark boots (test/bench -suite messages copies it there): the
// latency of Broadcast with replies, from the call to the last reply, and
// the sustained rate of Send to one instance.
//
//	msgload -mode latency -pool app -n 200
//	msgload -mode rate -target app@1 -d 10s
//
// It prints one line of results, key=value.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/corral-pool/corral/api"
)

func main() {
	mode := flag.String("mode", "latency", `"latency" or "rate"`)
	name := flag.String("pool", "app", "pool to broadcast to (latency)")
	target := flag.String("target", "app@1", "instance to send to (rate)")
	n := flag.Int("n", 200, "broadcasts to time (latency)")
	dur := flag.Duration("d", 10*time.Second, "how long to send (rate)")
	flag.Parse()
	ctx := context.Background()
	c, err := api.Dial(ctx)
	if err != nil {
		fail(err)
	}
	defer c.Close()
	switch *mode {
	case "latency":
		err = latency(ctx, c, *name, *n)
	case "rate":
		err = rate(ctx, c, *target, *dur)
	default:
		err = fmt.Errorf("-mode %q: want latency or rate", *mode)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "msgload:", err)
	os.Exit(1)
}

// latency times n broadcasts with replies after 10 for warm-up; each must
// be answered by every instance.
func latency(ctx context.Context, c *api.Client, name string, n int) error {
	var ds []time.Duration
	instances := 0
	for i := range n + 10 {
		t0 := time.Now()
		rs, err := c.Broadcast(ctx, name, fmt.Sprintf("ping %d", i), 5*time.Second)
		d := time.Since(t0)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Status != api.Replied {
				return fmt.Errorf("broadcast %d: %s %s: %s", i, r.Instance(), r.Status, r.Detail)
			}
		}
		instances = len(rs)
		if i >= 10 {
			ds = append(ds, d)
		}
	}
	slices.Sort(ds)
	fmt.Printf("instances=%d n=%d p50=%v p99=%v max=%v\n", instances, len(ds), pct(ds, 50), pct(ds, 99), ds[len(ds)-1])
	return nil
}

// rate sends to one instance, without waiting for replies, from 4 callers
// for d, and counts what was delivered.
func rate(ctx context.Context, c *api.Client, target string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type count struct{ ok, not int }
	done := make(chan count)
	for range 4 {
		go func() {
			var k count
			for ctx.Err() == nil {
				rs, err := c.Send(ctx, target, "flush-cache", 0)
				if err != nil {
					break
				}
				if len(rs) == 1 && rs[0].Status == api.Delivered {
					k.ok++
				} else {
					k.not++
				}
			}
			done <- k
		}()
	}
	var total count
	for range 4 {
		k := <-done
		total.ok += k.ok
		total.not += k.not
	}
	fmt.Printf("delivered=%d not_delivered=%d per_second=%.0f\n", total.ok, total.not, float64(total.ok)/d.Seconds())
	return nil
}

func pct(ds []time.Duration, p int) time.Duration {
	return ds[min(len(ds)-1, len(ds)*p/100)].Round(10 * time.Microsecond)
}
