package activation_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/corral-pool/corral/activation"
)

// A minimal worker: it serves on every socket of its pool, says READY=1, and
// on SIGTERM drains within the pool's stop_timeout.
func Example_server() {
	n, err := activation.Instance()
	if err != nil && !errors.Is(err, activation.ErrNoInstance) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from instance %d\n", n)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := activation.Serve(context.Background(), srv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Serve on a listener of one's own, and stop with ctx rather than signals.
func ExampleServeOptions_Serve() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		opts := activation.ServeOptions{Signals: []os.Signal{}, StopTimeout: 5 * time.Second}
		done <- opts.Serve(ctx, srv, l)
	}()

	resp, err := http.Get("http://" + l.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))

	stop()
	fmt.Println("Serve:", <-done)
	// Output:
	// hello
	// Serve: <nil>
}

// Take the pool's listener by name, and fall back to a listener of one's own
// when the program runs by hand.
func ExampleListener() {
	l, err := activation.Listener("app")
	if errors.Is(err, activation.ErrNoListener) {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	fmt.Println(l.Addr().Network())
	// Output: tcp
}

// Report every inherited fd, and close those the program has no use for.
func ExampleFDs() {
	fds, err := activation.FDs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, f := range fds {
		if f.File != nil {
			fmt.Fprintf(os.Stderr, "closing unexpected %v\n", f)
			f.File.Close()
		}
	}
}

// Tell systemd what the worker is doing; `systemctl status` shows it.
func ExampleStatus() {
	ctx := context.Background()
	activation.Status(ctx, "warming the cache")
	// … warm the cache …
	activation.Ready(ctx)
}

// Feed the watchdog of a unit with WatchdogSec= while the worker runs,
// whatever it does. Serve feeds it already, while its server makes
// progress; a worker whose requests outlast the interval (long polls,
// WebSockets) sets ServeOptions.NoWatchdog and feeds it this way.
func ExampleRunWatchdog() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		if err := activation.RunWatchdog(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	// … serve …
}

func ExampleInstance() {
	n, err := activation.Instance()
	if err != nil && !errors.Is(err, activation.ErrNoInstance) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("instance %d of pool %q, %v to stop\n", n, activation.Pool(), activation.StopTimeout())
}
