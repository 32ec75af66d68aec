package steer

import "github.com/cilium/ebpf/asm"

// The fds Listing gives its maps: no map is made, and no fd of a process
// has these numbers, so the instructions can only be read, not loaded.
const (
	ListingSocksFD = 1<<20 + 1
	ListingTableFD = 1<<20 + 2
	ListingDyingFD = 1<<20 + 3
)

// Listing returns the instructions of a group's program, as OpenGroup
// loads them, over the placeholder maps ListingSocksFD (the sockets) and
// ListingTableFD (the table) and ListingDyingFD (Exits' map): for reading, such as drawing its control
// flow (test/cmd/steering-picture, docs/steering.md).
func Listing() asm.Instructions {
	return program(ListingSocksFD, ListingTableFD, ListingDyingFD, 0)
}

// ContextField names the field of struct sk_reuseport_md at offset off,
// as the program reads it from its context, or "" for one it does not
// read.
func ContextField(off int16) string {
	switch off {
	case mdData:
		return "data"
	case mdDataEnd:
		return "data_end"
	case mdEthProto:
		return "eth_protocol"
	case mdHash:
		return "hash"
	}
	return ""
}

// EthProtoIPv6 is the value of sk_reuseport_md's eth_protocol for IPv6, as
// the program compares it.
var EthProtoIPv6 = ipv6
