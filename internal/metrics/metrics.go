// Package metrics serves corrald's Prometheus metrics (docs/metrics.md):
// each pool's desired and running instances and state, each instance's
// phase, CPU and memory, each socket's accept queue and its limit, and what
// happened since corrald started: exits by cause, reloads by outcome,
// messages by what became of them, recycles by cause. Every scrape takes
// one pool.Sample, which costs the coordinator's loop one copy and systemd
// no call. An instance of a pool is its label index ("1"), not instance,
// which Prometheus gives the scraped host.
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/pool"
)

// Source gives the samples: *pool.Status.
type Source interface {
	Sample(ctx context.Context) (pool.Sample, error)
}

// The words of the state sets and of the counters' labels that a scrape
// shows even before they happen, so that rate() and alerts see a 0 first.
var (
	poolStates = []string{"running", "degraded", "crash-loop", "socket-failed", "not-accepting", "stopped"}
	initial    = map[string][]string{
		pool.TallyExit:    {"exit-code", "signal", "core-dump", "oom-kill", "watchdog", "hung", "timeout"},
		pool.TallyReload:  {"ok", "failed"},
		pool.TallyDeploy:  {"ok", "failed", "rolled back"},
		pool.TallyMessage: {string(api.Replied), string(api.Failed), string(api.Delivered), string(api.NoReply), string(api.NotDelivered)},
		pool.TallyRecycle: {"age", "memory"},
	}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descDesired  = desc("corral_pool_desired_instances", "Instances the pool should run (its count, or corral scale's).", "pool")
	descRunning  = desc("corral_pool_running_instances", "Instances of the pool that are active or starting, up to its count.", "pool")
	descState    = desc("corral_pool_state", "The pool's state, as corral list shows it: 1 for the current one.", "pool", "state")
	descDrained  = desc("corral_pool_drained", "1 while the operator has the pool drained (corral drain): the HAProxy agent answers drain.", "pool")
	descSteering = desc("corral_pool_steering", "1 while a program in the kernel steers the pool's new connections to the instances that serve; 0 when it is off on this host or steering = false (pools with a socket per instance only).", "pool")
	descRelease  = desc("corral_instance_release_info", "Always 1, for an instance of a pool with a release link: labelled with the release it runs, the directory the link pointed at when its process started (corral deploy).", "pool", "index", "release")
	descSpare    = desc("corral_instance_spare", "1 for each of the pool's spares (spares =): started, out of rotation until an instance stops serving; no series for the others.", "pool", "index")
	descStands   = desc("corral_instance_spare_in_rotation", "1 while a spare stands in rotation for an instance that does not serve; no series otherwise.", "pool", "index")
	descCordon   = desc("corral_instance_cordoned", "1 while the operator has the instance cordoned (corral cordon): it gets no new connections; no series otherwise.", "pool", "index")
	descPhase    = desc("corral_instance_state", "The instance's phase, as corral status shows it, always 1: one series per instance, labelled with its current phase.", "pool", "index", "phase")
	descCPU      = desc("corral_instance_cpu_seconds_total", "CPU time the instance's cgroup used in its current life.", "pool", "index")
	descMemory   = desc("corral_instance_memory_bytes", "Memory the instance's cgroup uses (memory.current).", "pool", "index")
	descStart    = desc("corral_instance_start_time_seconds", "When the instance last became active, in seconds since the epoch.", "pool", "index")
	descRestarts = desc("corral_instance_restarts", "Restarts of the instance that systemd and corrald counted (NRestarts and corrald's own).", "pool", "index")
	descQueued   = desc("corral_socket_accept_queue_length", "Connections waiting in the listening socket's accept queue.", "pool", "index", "address")
	descBacklog  = desc("corral_socket_accept_queue_limit", "How many connections may wait in the listening socket's accept queue (its backlog).", "pool", "index", "address")
	descCounts   = map[string]*prometheus.Desc{
		pool.TallyExit:    desc("corral_restarts_total", "Exits of the pool's instances that were restarted, by systemd's result: exit-code, signal, core-dump, oom-kill, watchdog (PID 1's), hung (corrald's), timeout.", "pool", "result"),
		pool.TallyReload:  desc("corral_reloads_total", "Rolling reloads of the pool, by outcome: ok or failed.", "pool", "outcome"),
		pool.TallyDeploy:  desc("corral_deploys_total", "Deploys and rollbacks of the pool (corral deploy, corral rollback), by outcome: ok, failed (refused, or the rollback itself failed) or rolled back (the gate failed and corrald put the pool back).", "pool", "outcome"),
		pool.TallyMessage: desc("corral_messages_total", "Messages to the pool's instances (corral send, broadcast), one per instance addressed, by what became of it.", "pool", "status"),
		pool.TallyRecycle: desc("corral_recycles_total", "Instances recycled before the kernel had to act, by cause: age or memory.", "pool", "cause"),
	}
	descUp = desc("corral_scrape_ok", "1 when corrald could read its pools for this scrape.")
)

// collector turns a Sample into metrics.
type collector struct {
	src     Source
	timeout time.Duration
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDesired, descRunning, descState, descDrained, descSteering, descCordon, descSpare, descStands, descRelease, descPhase, descCPU, descMemory, descStart, descRestarts, descQueued, descBacklog, descUp} {
		ch <- d
	}
	for _, d := range descCounts {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	s, err := c.src.Sample(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counted := map[pool.TallyKey]bool{}
	for _, p := range s.Pools {
		gauge(descDesired, float64(p.Desired), p.Name)
		gauge(descRunning, float64(p.Running), p.Name)
		for _, st := range poolStates {
			gauge(descState, bool01(p.State == st), p.Name, st)
		}
		gauge(descDrained, bool01(p.Drained), p.Name)
		if p.Steering != "" {
			gauge(descSteering, bool01(p.Steering == "on"), p.Name)
		}
		for _, in := range p.Instances {
			i := strconv.Itoa(int(in.Index))
			if in.Cordoned {
				gauge(descCordon, 1, p.Name, i)
			}
			if in.Spare {
				gauge(descSpare, 1, p.Name, i)
			}
			if in.StandsFor != 0 {
				gauge(descStands, 1, p.Name, i)
			}
			if in.Release != "" {
				gauge(descRelease, 1, p.Name, i, in.Release)
			}
			// The current phase only: all nine for each of 64 instances
			// were 576 of a scrape's 948 series, and most of its cost.
			gauge(descPhase, 1, p.Name, i, in.Phase)
			gauge(descRestarts, float64(in.Restarts), p.Name, i)
			if in.PID == 0 {
				continue
			}
			if in.CPUNSec != api.Unknown {
				ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, float64(in.CPUNSec)/1e9, p.Name, i)
			}
			if in.MemoryBytes != api.Unknown {
				gauge(descMemory, float64(in.MemoryBytes), p.Name, i)
			}
			if in.SinceUSec != 0 {
				gauge(descStart, float64(in.SinceUSec)/1e6, p.Name, i)
			}
		}
		for _, q := range p.Queues {
			i := strconv.Itoa(q.Index)
			gauge(descQueued, float64(q.Queued), p.Name, i, q.Address)
			gauge(descBacklog, float64(q.Backlog), p.Name, i, q.Address)
		}
		for kind, whats := range initial {
			for _, w := range whats {
				k := pool.TallyKey{Kind: kind, Pool: p.Name, What: w}
				counted[k] = true
				ch <- prometheus.MustNewConstMetric(descCounts[kind], prometheus.CounterValue, float64(s.Counts[k]), p.Name, w)
			}
		}
	}
	// Other causes as they come, and the counts of pools since removed.
	for k, n := range s.Counts {
		if d := descCounts[k.Kind]; d != nil && !counted[k] {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), k.Pool, k.What)
		}
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Registry returns the registry of corrald's metrics: the pools' from src,
// corral_build_info with version, and corrald's own process and Go
// runtime.
func Registry(src Source, version string) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collector{src: src, timeout: 10 * time.Second},
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "corral"}),
		collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "corral_build_info",
			Help:        "corrald's version and the Go that built it; always 1.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
		}, func() float64 { return 1 }))
	return r
}

// Handler serves the metrics of r at /metrics, in the text format or
// OpenMetrics as the scraper asks, two scrapes at a time at most.
func Handler(r *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		// Not gzipped: a quarter of a scrape's CPU (BenchmarkScrape) to
		// save the network some 70 KB every scrape interval.
		DisableCompression:  true,
		MaxRequestsInFlight: 2,
		Timeout:             30 * time.Second,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("corrald: metrics at /metrics (docs/metrics.md)\n"))
	})
	return mux
}
