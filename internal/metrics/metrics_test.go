package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/pool"
)

type fakeSource struct {
	s   pool.Sample
	err error
}

func (f fakeSource) Sample(context.Context) (pool.Sample, error) { return f.s, f.err }

func sample() pool.Sample {
	return pool.Sample{
		Pools: []pool.PoolSample{{
			PoolInfo: api.PoolInfo{Name: "shop", State: "degraded", Desired: 2, Running: 1, Drained: true, Steering: "on"},
			Instances: []api.InstanceInfo{
				{Pool: "shop", Index: 1, Phase: "running", PID: 10, SinceUSec: 1_700_000_000_000_000, Restarts: 2, MemoryBytes: 7 << 20, CPUNSec: 1_500_000_000},
				{Pool: "shop", Index: 2, Phase: "crash-loop", Restarts: 5, MemoryBytes: api.Unknown, CPUNSec: api.Unknown, Cordoned: true, Release: "/srv/shop/releases/42"},
				{Pool: "shop", Index: 3, Phase: "running", PID: 12, MemoryBytes: api.Unknown, CPUNSec: api.Unknown, Spare: true, StandsFor: 2},
				{Pool: "shop", Index: 4, Phase: "running", PID: 13, MemoryBytes: api.Unknown, CPUNSec: api.Unknown, Spare: true},
			},
			Queues: []pool.Queue{{Index: 1, Address: ":8080", Queued: 3, Backlog: 4096}, {Index: 2, Address: ":8080", Backlog: 4096}},
		}},
		Counts: map[pool.TallyKey]uint64{
			{Kind: pool.TallyExit, Pool: "shop", What: "oom-kill"}:   2,
			{Kind: pool.TallyExit, Pool: "shop", What: "exotic"}:     1,
			{Kind: pool.TallyReload, Pool: "shop", What: "ok"}:       4,
			{Kind: pool.TallyMessage, Pool: "gone", What: "replied"}: 9,
		},
	}
}

func TestCollect(t *testing.T) {
	r := Registry(fakeSource{s: sample()}, "1.2.3")
	srv := httptest.NewServer(Handler(r))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	for _, want := range []string{
		`corral_pool_desired_instances{pool="shop"} 2`,
		`corral_pool_running_instances{pool="shop"} 1`,
		`corral_pool_state{pool="shop",state="degraded"} 1`,
		`corral_pool_state{pool="shop",state="running"} 0`,
		`corral_pool_drained{pool="shop"} 1`,
		`corral_pool_steering{pool="shop"} 1`,
		`corral_instance_cordoned{index="2",pool="shop"} 1`,
		`corral_instance_spare{index="3",pool="shop"} 1`,
		`corral_instance_spare{index="4",pool="shop"} 1`,
		`corral_instance_spare_in_rotation{index="3",pool="shop"} 1`,
		`corral_instance_release_info{index="2",pool="shop",release="/srv/shop/releases/42"} 1`,
		`corral_deploys_total{outcome="rolled back",pool="shop"} 0`,
		`corral_instance_state{index="2",phase="crash-loop",pool="shop"} 1`,
		`corral_instance_cpu_seconds_total{index="1",pool="shop"} 1.5`,
		`corral_instance_memory_bytes{index="1",pool="shop"} 7.340032e+06`,
		`corral_instance_start_time_seconds{index="1",pool="shop"} 1.7e+09`,
		`corral_instance_restarts{index="2",pool="shop"} 5`,
		`corral_socket_accept_queue_length{address=":8080",index="1",pool="shop"} 3`,
		`corral_socket_accept_queue_limit{address=":8080",index="1",pool="shop"} 4096`,
		`corral_restarts_total{pool="shop",result="oom-kill"} 2`,
		`corral_restarts_total{pool="shop",result="hung"} 0`,
		`corral_restarts_total{pool="shop",result="exotic"} 1`,
		`corral_reloads_total{outcome="ok",pool="shop"} 4`,
		`corral_reloads_total{outcome="failed",pool="shop"} 0`,
		`corral_messages_total{pool="gone",status="replied"} 9`,
		`corral_recycles_total{cause="memory",pool="shop"} 0`,
		`corral_build_info{goversion="go`,
		`corral_scrape_ok 1`,
		`corral_process_cpu_seconds_total`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %s in\n%s", want, text)
		}
	}
	// An instance that does not run has no CPU or memory, rather than 0.
	for _, bad := range []string{`corral_instance_cpu_seconds_total{index="2"`, `corral_instance_memory_bytes{index="2"`, `phase="crash-loop",pool="shop"} 0`} {
		if strings.Contains(text, bad) {
			t.Errorf("%s… for an instance without a process", bad)
		}
	}
	problems, err := testutil.CollectAndLint(collector{src: fakeSource{s: sample()}, timeout: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestCollectFails: a scrape while corrald cannot read its pools says so,
// and fails nothing else.
func TestCollectFails(t *testing.T) {
	r := Registry(fakeSource{err: errors.New("busy")}, "1.2.3")
	srv := httptest.NewServer(Handler(r))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "corral_scrape_ok 0") {
		t.Errorf("status %d:\n%s", resp.StatusCode, b)
	}
	if resp, err := srv.Client().Get(srv.URL + "/nope"); err != nil || resp.StatusCode != 404 {
		t.Errorf("/nope: %v %v", resp.StatusCode, err)
	}
}

// BenchmarkScrape: one scrape of 64 instances, from the sample to the
// text, without corrald's loop or the cgroup reads (test/bench measures
// those in a real box).
func BenchmarkScrape(b *testing.B) {
	s := sample()
	p := s.Pools[0]
	p.Instances = nil
	p.Queues = nil
	for i := 1; i <= 64; i++ {
		p.Instances = append(p.Instances, api.InstanceInfo{Pool: "shop", Index: uint32(i), Phase: "running", PID: uint32(100 + i),
			SinceUSec: 1_700_000_000_000_000, MemoryBytes: 7 << 20, CPUNSec: 1_500_000_000})
		p.Queues = append(p.Queues, pool.Queue{Index: i, Address: ":8080", Backlog: 4096})
	}
	s.Pools = []pool.PoolSample{p}
	srv := httptest.NewServer(Handler(Registry(fakeSource{s: s}, "1.2.3")))
	defer srv.Close()
	c := srv.Client()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(srv.URL + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
