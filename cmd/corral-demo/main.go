// Command corral-demo is the worker of corral's demo pool, app: the classic
// Node.js cluster demo server, written on package activation.
//
//	GET /           hello from instance N, pid P
//	GET /cpu?ms=N   burns N ms (0 to 10000) of CPU, then says so
//	GET /health     ok
//
// With DEMO_FAULTS=1 in its environment (the pool's environment), it
// also has fault endpoints, for tests of what corral and systemd do with a
// worker that goes wrong; without it they are 404 like any unknown path:
//
//	GET /hang        deadlocks the server for real: takes a process-wide
//	                 mutex that every request also takes for a moment, and
//	                 never releases it. It answers nothing, nor does any
//	                 request after it, /health included. With WatchdogSec=
//	                 the watchdog then kills the worker (see activation.Serve).
//	GET /alloc?mb=N  allocates N MiB more (1 to 4096), writes to every page
//	                 so that it is resident, keeps it for the life of the
//	                 process and answers with the total held: holding T MiB
//	GET /free        drops what /alloc holds, returns it to the system and
//	                 says so: freed T MiB, holding 0 MiB
//	GET /sick        makes /health answer 500 from then on, for tests of
//	                 health checks; DEMO_SICK=1 in the environment starts
//	                 the worker that way
//	GET /well        makes /health answer ok again
//
// Under corral it serves on every socket it inherits, whatever its name,
// sends READY=1 once serving, and on SIGTERM stops accepting and finishes
// in-flight requests within CORRAL_STOP_TIMEOUT. Run by hand, it needs an
// address:
//
//	corral-demo -listen 127.0.0.1:8080
//
// Under corral it also answers corral's messages (corral send POOL@I TEXT,
// corral broadcast POOL TEXT) with its instance number and the text it got:
//
//	instance 3 got "ping"
//
// It logs one line to stderr when it starts serving and one when it stops,
// and one when it connects to corrald for messages, or cannot, and each time
// it loses that connection or makes it again.
//
// Exit status: 0 after a clean drain, 1 on an error, 2 on a usage or
// configuration error, which restarting does not fix.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
)

const (
	exitOK     = 0
	exitError  = 1
	exitConfig = 2
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: corral-demo [-listen host:port]\n\n"+
			"Under corral the demo serves on the sockets it inherits; run by hand it needs -listen.\n\n")
		flag.PrintDefaults()
	}
	listen := flag.String("listen", "", "`address` to listen on when no socket is inherited, such as 127.0.0.1:8080")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "corral-demo: unexpected argument %q; see corral-demo -h\n", flag.Arg(0))
		os.Exit(exitConfig)
	}

	// One core per instance, like the single-threaded Node process this demo
	// mirrors: the pool, not the process, spreads work over the cores, with
	// one instance per core ("instances = auto"). Pinning instances with
	// CPUAffinity= instead would fight the kernel's scheduler as soon as
	// there are more instances than cores. An operator who wants otherwise
	// sets GOMAXPROCS in the pool's environment.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}

	cfg := config{Listen: *listen, Faults: os.Getenv("DEMO_FAULTS") == "1", Sick: os.Getenv("DEMO_SICK") == "1"}
	err := run(context.Background(), cfg, os.Stderr)
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintf(os.Stderr, "corral-demo: %v\n", err)
	if errors.As(err, new(*configError)) {
		os.Exit(exitConfig)
	}
	os.Exit(exitError)
}
