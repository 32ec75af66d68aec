package pool

import (
	"strings"
	"testing"
)

// TestStoreReply: a reply is stored in the struct of its signature, and a
// reply of another shape (a corrald of another version) says what to do.
func TestStoreReply(t *testing.T) {
	// godbus hands over a struct as []any, in field order.
	row := []any{"app", uint32(1), "app@1.service", "running", "active", "running", uint32(7),
		uint64(1), uint32(2), uint64(3), uint64(4), ""}
	var ws []instanceWire
	if err := storeReply("ListInstances", []any{[][]any{append(row, true)}}, &ws); err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].Unit != "app@1.service" || ws[0].PID != 7 || !ws[0].Messages {
		t.Errorf("stored %+v", ws)
	}

	err := storeReply("ListInstances", []any{[][]any{row}}, &ws)
	for _, want := range []string{"corrald's answer to ListInstances is not the a(sussssututtsb) this corral expects",
		"'sudo systemctl restart corral'"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a reply without the messages field: %v, want %q", err, want)
		}
	}
}
