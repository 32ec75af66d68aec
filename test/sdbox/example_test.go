package sdbox_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

// Boot a box outside of a test (in a test, use sdbox.New), give it a unit and start it.
func ExampleBoot() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	box, err := sdbox.Boot(ctx, sdbox.Options{Mask: []string{"nginx.service"}})
	if err != nil {
		log.Fatal(err)
	}
	defer box.Close()

	unit := "[Service]\nType=oneshot\nExecStart=/bin/echo hello\n"
	if err := box.WriteFile("/etc/systemd/system/hello.service", []byte(unit), 0o644); err != nil {
		log.Fatal(err)
	}
	for _, args := range [][]string{
		{"systemctl", "daemon-reload"},
		{"systemctl", "start", "hello.service"},
	} {
		if _, _, err := box.Exec(ctx, args...); err != nil {
			log.Fatal(err)
		}
	}
	out, _, err := box.Exec(ctx, "journalctl", "-u", "hello.service", "-o", "cat", "--no-pager")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(out)
	fmt.Printf("a shell inside: nsenter -t %d -a bash\n", box.PID())
}
