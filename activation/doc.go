// Package activation is the worker side of corral: it lets a Go program run
// as an instance of a corral pool, or under any systemd socket unit.
//
// It speaks two systemd protocols. Socket activation (sd_listen_fds(3)): the
// service manager binds the pool's sockets and passes them to every instance
// as fds 3, 4, … with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID; FDs,
// Listeners, AllListeners and Listener hand them out. Readiness
// (sd_notify(3)): Ready, Stopping, Status, Watchdog and Notify send READY=1,
// STOPPING=1, STATUS= and WATCHDOG=1 to NOTIFY_SOCKET. Instance, Pool and
// StopTimeout read what corral adds: CORRAL_INSTANCE, CORRAL_POOL and
// CORRAL_STOP_TIMEOUT. Serve ties these together for net/http: it serves on
// the inherited listeners, says READY=1, feeds the unit's watchdog
// (WatchdogSec=) while the server makes progress, and on SIGTERM stops
// accepting and drains in-flight requests within the stop timeout.
//
// ServeMessages answers the messages an operator sends to the instances of
// a pool (`corral send POOL@I TEXT`, `corral broadcast POOL TEXT`). It
// connects to corrald's unix socket named by CORRAL_MESSAGES, passes each
// message to a MessageHandler, one at a time and in order, sends back the
// reply or the error, and reconnects when the connection ends. Run it in a
// goroutine beside Serve, with a ctx that ends when Serve returns (see
// ExampleServeMessages); the protocol, which any language can speak in a few
// lines, is in docs/messages.md.
//
// A minimal worker:
//
//	func main() {
//		mux := http.NewServeMux()
//		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
//			fmt.Fprintln(w, "hello")
//		})
//		if err := activation.Serve(context.Background(), &http.Server{Handler: mux}); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//	}
//
// Given the pool file /etc/corral/pools.d/app.toml
//
//	exec         = ["/usr/local/bin/worker"]
//	listen       = ["127.0.0.1:8080", "/run/app/app.sock"]
//	instances    = 4
//	readiness    = "notify"
//	stop_timeout = "20s"
//
// corral's generator writes app@.socket, one socket per instance with
// SO_REUSEPORT (balance = "reuseport", the default),
//
//	[Socket]
//	ListenStream=127.0.0.1:8080
//	ListenStream=/run/app/app.sock
//	FileDescriptorName=app
//	ReusePort=yes
//
// and app@.service, whose instance I the worker runs as:
//
//	[Service]
//	Type=notify
//	NotifyAccess=main
//	Sockets=app@%i.socket
//	ExecStart=/usr/local/bin/worker
//	Environment=CORRAL_POOL=app CORRAL_INSTANCE=%i CORRAL_STOP_TIMEOUT=20s
//	TimeoutStopSec=20s
//	KillMode=mixed
//
// so instance 3 starts with fd 3 listening on 127.0.0.1:8080 and fd 4 on
// /run/app/app.sock, and this environment:
//
//	LISTEN_PID=<its pid>  LISTEN_FDS=2  LISTEN_FDNAMES=app:app
//	NOTIFY_SOCKET=/run/systemd/notify
//	CORRAL_POOL=app  CORRAL_INSTANCE=3  CORRAL_STOP_TIMEOUT=20s
//
// Listener("app") returns the TCP listener; AllListeners returns both.
//
// # Who closes what
//
// The first call to FDs, Listeners, AllListeners, Listener or Serve reads
// the fds, unsets LISTEN_* and marks the fds close-on-exec. From then on the
// caller owns every listener and file: Serve closes the listeners it serves
// on; fds that are not listening stream sockets are never skipped silently,
// Listeners and AllListeners report them with ErrNotListener and FDs hands
// them out as files for the caller to use or close.
//
// # NOTES
//
// Closing a listener in the worker closes the worker's fd, not the socket:
// systemd holds its own copy of every socket of a socket unit. So when an
// instance stops, other instances keep accepting on a shared socket, and the
// kernel queues new connections on an instance's own reuseport socket until
// systemd starts that instance again. To close the port, stop the socket
// units. It also means a worker cannot shed load by closing its listener
// and running on: with reuseport the kernel goes on hashing connections to
// that instance's socket, where nobody accepts them.
//
// With balance = "reuseport" the kernel hashes each connection to one
// instance's socket; a connection hashed to a stopped instance waits in its
// queue until the socket unit starts that instance again. Keep the restart
// delay short, or use balance = "shared", where any running instance accepts.
//
// LISTEN_PID must be the worker's own pid and, with NotifyAccess=main, only
// the main process's READY=1 counts. A wrapper script must therefore exec the
// worker ("exec /usr/local/bin/worker"), not run it as a child.
//
// The fds are read once and LISTEN_* unset: a second reader in the same
// process (go-systemd's activation package, say) finds nothing. Read them
// before starting child processes, or the children inherit the fds.
//
// The package trusts LISTEN_FDS, as sd_listen_fds(3) does. It checks that
// every fd it names is open before touching any, but a LISTEN_FDS that is
// too large can name fds the Go runtime opened itself.
//
// corrald keeps one message connection per instance, the instance that the
// connecting process belongs to: a child process that inherits
// CORRAL_MESSAGES and calls ServeMessages too takes the instance's
// connection from its parent, and they go on taking it from each other.
// Serve messages from one process of the instance.
//
// READY=1 means "serving". A worker that must warm up (load a cache, connect
// to a database) should do so before calling Serve; systemd queues the
// connections that arrive meanwhile, and with readiness = "notify"
// `systemctl start` waits.
//
// Serve's drain deadline is shorter than the stop timeout so that the
// process exits on its own, with its own error, before systemd's SIGKILL.
// Long-lived requests (streaming, long polling) should watch the request's
// context or srv.RegisterOnShutdown, or they will hit that deadline.
// Hijacked connections such as WebSockets are not drained at all.
//
// Under a unit with WatchdogSec=, Serve looks at the server four times per
// interval and sends WATCHDOG=1 only when it made progress, so that systemd
// kills a worker whose handlers deadlock (all blocked on a mutex, say) and
// keeps a busy one. Progress: nothing is in flight, or a request finished
// since the last look; starting requests does not count, since a deadlocked
// server goes on starting them. So systemd kills a worker in which requests
// stay in flight and none finishes for a whole interval: within 1¼
// intervals of a deadlock. After three quarters of an interval without
// progress Serve also says STATUS=hung: N requests in flight, none finished
// for Xs, which `systemctl status` shows. Serve feeds regardless while it
// drains. The limit: a server whose only requests in flight are long polls,
// streams or WebSockets lasting longer than the interval looks stuck and is
// killed.
// Such a server should not set WatchdogSec=, or should set
// ServeOptions.NoWatchdog and feed the watchdog itself with RunWatchdog, or
// with Watchdog from a loop that proves its own health.
package activation
