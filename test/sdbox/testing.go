package sdbox

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// BootTimeout bounds the boot in New.
const BootTimeout = 60 * time.Second

// New boots a box for a test, or fails the test with t.Fatal: an integration test that cannot
// get its systemd must fail, not skip. Boot is bounded by BootTimeout. Close runs in
// t.Cleanup; if the test failed by then, the last lines of the console log and of
// `journalctl -b` inside are written to t.Log first.
func New(t testing.TB, opts Options) *Box {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), BootTimeout)
	defer cancel()
	var log bytes.Buffer
	if opts.Log != nil {
		opts.Log = io.MultiWriter(opts.Log, &log)
	} else {
		opts.Log = &log
	}
	b, err := Boot(ctx, opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			b.dump(t)
		}
		if err := b.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return b
}

// dump logs the console's tail and the journal's, to explain a failed test.
func (b *Box) dump(t testing.TB) {
	t.Helper()
	select {
	case <-b.exited:
		t.Logf("--- %s: powered off before the test ended: no console or journal to show", b.name)
		return
	default:
	}
	t.Logf("--- %s: last lines of the console log\n%s", b.name, b.consoleTail(40))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _, err := b.Exec(ctx, "journalctl", "-b", "--no-pager", "-n", "200")
	if err != nil {
		t.Logf("--- %s: journalctl: %v", b.name, err)
	}
	t.Logf("--- %s: journalctl -b --no-pager -n 200\n%s", b.name, out)
}
