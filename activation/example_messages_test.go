package activation_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/corral-pool/corral/activation"
)

// Answer corral's messages beside serving HTTP: `corral send app@3
// flush-cache` reaches the handler of instance 3, and its reply goes back to
// the command. The messages stop when Serve has drained.
func ExampleServeMessages() {
	var hits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintln(w, "hello")
	})

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := activation.ServeMessages(ctx, activation.MessageHandlerFunc(func(ctx context.Context, m activation.Message) (string, error) {
			switch m.Text {
			case "hits":
				return fmt.Sprint(hits.Load()), nil
			case "reset":
				return fmt.Sprintf("reset after %d hits", hits.Swap(0)), nil
			default:
				return "", fmt.Errorf("unknown message %q: try hits or reset", m.Text)
			}
		}))
		if err != nil && !errors.Is(err, activation.ErrNoMessages) { // run by hand: no messages
			fmt.Fprintln(os.Stderr, err)
		}
	}()

	err := activation.Serve(context.Background(), &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
	stop()
	<-done
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Report the state of the connection to corrald, here a stand-in that
// listens on a socket of its own, sends one message and prints the answer.
func ExampleMessageOptions_ServeMessages() {
	dir, err := os.MkdirTemp("", "corral")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "messages.sock")
	corrald, err := net.Listen("unix", path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer corrald.Close()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		opts := activation.MessageOptions{
			Path: path, // by default, CORRAL_MESSAGES
			OnConnect: func(err error) {
				if err != nil {
					fmt.Println("not connected:", err)
					return
				}
				fmt.Println("connected")
			},
		}
		done <- opts.ServeMessages(ctx, activation.MessageHandlerFunc(func(ctx context.Context, m activation.Message) (string, error) {
			return strings.ToUpper(m.Text), nil
		}))
	}()

	c, err := corrald.Accept()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Fprintln(c, `{"id":"5f3c-17","message":"ping"}`)
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(answer)

	stop()
	fmt.Println("ServeMessages:", <-done)
	// Output:
	// connected
	// {"id":"5f3c-17","reply":"PING"}
	// ServeMessages: <nil>
}
