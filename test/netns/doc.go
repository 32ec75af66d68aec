// Package netns makes throwaway network namespaces for integration tests: a Host is a named
// network namespace with one private IPv4 address, joined to the host by a veth pair, so that
// a test can run several "machines" on one machine (for example one sdbox box in each, with
// sdbox.Options.NetNS set to Host.Path) and put a proxy on the host in front of them, each
// machine with its own address and its own ports.
//
//	func TestTwoMachines(t *testing.T) {
//		a, b := netns.NewT(t, netns.Options{}), netns.NewT(t, netns.Options{})
//		boxA := sdbox.New(t, sdbox.Options{NetNS: a.Path})
//		boxB := sdbox.New(t, sdbox.Options{NetNS: b.Path})
//		// a service listening on 0.0.0.0:8080 in boxA is http://a.Addr:8080/ on the host
//		...
//		a.Down(ctx) // a's network vanishes: connections to a.Addr time out
//	}
//
// Each Host takes a /24 of Options.Pool (10.213.0.0/16 by default), 10.X.Y.0/24: the
// namespace /run/netns/corral-X-Y holds lo (up) and eth0 with 10.X.Y.2/24 and a default route
// via the host's end, the interface corral-X-Y with 10.X.Y.1/24. A /24 is taken only if no
// route of the host (any table) overlaps it, and a lock file, /run/corral-X-Y.netns.lock held
// for the Host's life, keeps concurrent test processes off it.
//
// Traffic stays on those addresses:
//
//   - The host does not forward what comes in from a Host (forwarding=0 on its end), so a
//     namespace reaches the host's own addresses and nothing else, not another Host.
//   - A last-resort route "unreachable 10.X.Y.0/24 metric 4294967295" makes the host's
//     packets for the /24 fail at once, instead of following the default route out of the
//     machine, whenever the veth's route is missing: while the Host is being made or
//     removed, or if someone sets its host end down.
//   - IPv6 is off on both ends (addrgenmode none: no link-local address).
//
// Down and Up cut and restore a Host's link by setting the namespace's end of the veth down
// and up. This looks like a machine that lost power or its cable: the host keeps its route,
// its packets to Addr vanish, and a connection attempt times out (after about 3 s the kernel
// gives up resolving the address and reports "no route to host"). Setting the host's end down
// instead would remove the route: packets would fail at once, or, without the last-resort
// route, leave through the default gateway.
//
// Everything needs root and iproute2's ip (apt-get install iproute2). If a test process dies
// without Close, New (or CleanupStale) removes its leftovers once their lock is free and no
// process runs in the namespace.
package netns
