package activation

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// pollPair returns a pollConn connected to a listener's side of it.
func pollPair(t *testing.T) (*pollConn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := dialPoll(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return c, peer
}

func TestPollConnReadWrite(t *testing.T) {
	c, peer := pollPair(t)
	go func() {
		time.Sleep(20 * time.Millisecond) // the read waits first
		peer.Write([]byte("hello"))
	}()
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}
	// Larger than the socket buffers: WriteAll waits for room, twice or more.
	big := bytes.Repeat([]byte("x"), 4<<20)
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		got <- b
	}()
	if err := c.WriteAll(big, time.Now().Add(10*time.Second)); err != nil {
		t.Fatalf("WriteAll: %v", err)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("the peer read %d bytes; want %d", len(b), len(big))
	}
	peer.Close()
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("Read after the peer closed = %v; want io.EOF", err)
	}
}

func TestPollConnWriteDeadline(t *testing.T) {
	c, _ := pollPair(t) // the peer never reads
	big := bytes.Repeat([]byte("x"), 16<<20)
	start := time.Now()
	err := c.WriteAll(big, time.Now().Add(100*time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteAll to a peer that does not read = %v; want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("WriteAll took %v; want about 100ms", d)
	}
}

func TestPollConnInterrupt(t *testing.T) {
	c, _ := pollPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 16))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Interrupt()
	c.Interrupt() // again: harmless
	select {
	case err := <-errc:
		if err == nil || err == io.EOF {
			t.Fatalf("Read after Interrupt = %v; want an error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after Interrupt")
	}
	if err := c.WriteAll(bytes.Repeat([]byte("x"), 16<<20), time.Now().Add(5*time.Second)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write that must wait after Interrupt = %v; want an error at once", err)
	}
}

func TestDialPollErrors(t *testing.T) {
	_, err := dialPoll(filepath.Join(t.TempDir(), "missing"), time.Second)
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("dialPoll to a missing socket = %v; want ENOENT", err)
	}
}
