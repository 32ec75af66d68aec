// Package listenq reads the accept queues of the listening sockets in the
// caller's network namespace from the kernel, over sock_diag netlink
// (inet_diag for TCP over IPv4 and IPv6, unix_diag for unix stream
// sockets), asking for listening sockets only. It opens no socket of
// theirs and reads nothing of any process: one netlink dump per family.
//
// For a listening socket the kernel reports in the queue fields how many
// connections wait to be accepted (sk_ack_backlog) and the backlog they may
// reach (sk_max_ack_backlog). corrald reads them to tell a worker that runs
// but never accepts from the socket it was given.
package listenq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Socket is one listening socket.
type Socket struct {
	// Addr is the address as a pool file writes it: "127.0.0.1:8080",
	// "[::1]:8080", "[::]:8080" (every address), or a unix socket path.
	Addr string
	// Inode is the socket's inode number, which grows with each socket
	// the kernel makes.
	Inode uint32
	// Queued is how many connections wait in the accept queue.
	Queued uint32
	// Backlog is how many may wait.
	Backlog uint32
}

const (
	tcpListen      = 10 // TCP_LISTEN in the kernel's TCP states
	tcpEstablished = 1  // TCP_ESTABLISHED
	sizeofNlmsg    = 16
	// inet_diag_req_v2: family, protocol, ext, pad (1 byte each), states
	// (4), inet_diag_sockid (48).
	sizeofInetReq = 56
	// inet_diag_msg: family, state, timer, retrans (1 each), sockid (48),
	// expires, rqueue, wqueue, uid, inode (4 each).
	sizeofInetMsg = 72
	// unix_diag_req: family, protocol, pad (2), states, ino, show,
	// cookie[2] (4 each).
	sizeofUnixReq = 24
	// unix_diag_msg: family, type, state, pad, ino, cookie[2].
	sizeofUnixMsg = 16

	udiagShowName  = 0x01
	udiagShowRqlen = 0x10
	unixDiagName   = 0
	unixDiagRqlen  = 4
)

// Families says which sockets to read.
type Families uint8

const (
	IPv4 Families = 1 << iota // TCP over IPv4
	IPv6                      // TCP over IPv6
	Unix                      // unix stream sockets
	All  = IPv4 | IPv6 | Unix
)

// Listening returns the listening TCP and unix stream sockets of the
// network namespace.
func Listening() ([]Socket, error) { return Read(All) }

// Read returns the listening sockets of the families fs: one netlink dump
// for each.
func Read(fs Families) ([]Socket, error) { return read(fs, tcpListen) }

// Established returns the established TCP and unix stream connections of
// the families fs. Addr is the local address: for a connection a listening
// socket accepted, the listening socket's address (a unix socket's path).
// Queued and Backlog are zero; Inode is the connection's.
func Established(fs Families) ([]Socket, error) { return read(fs, tcpEstablished) }

func read(fs Families, state uint8) ([]Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("listenq: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("listenq: bind netlink: %w", err)
	}
	var out []Socket
	buf := make([]byte, os.Getpagesize()*8)
	for seq, family := range []uint8{unix.AF_INET, unix.AF_INET6, unix.AF_UNIX} {
		if fs&(1<<seq) == 0 {
			continue
		}
		var req []byte
		if family == unix.AF_UNIX {
			req = make([]byte, sizeofUnixReq)
			req[0] = unix.AF_UNIX
			binary.NativeEndian.PutUint32(req[4:], 1<<state)
			binary.NativeEndian.PutUint32(req[12:], udiagShowName|udiagShowRqlen)
		} else {
			req = make([]byte, sizeofInetReq)
			req[0], req[1] = family, unix.IPPROTO_TCP
			binary.NativeEndian.PutUint32(req[4:], 1<<state)
		}
		socks, err := dump(fd, uint32(seq+1), req, buf, state)
		if err != nil {
			return nil, fmt.Errorf("listenq: %s: %w", familyName(family), err)
		}
		out = append(out, socks...)
	}
	return out, nil
}

func familyName(f uint8) string {
	switch f {
	case unix.AF_INET:
		return "inet_diag (IPv4)"
	case unix.AF_INET6:
		return "inet_diag (IPv6)"
	}
	return "unix_diag"
}

// dump sends one SOCK_DIAG_BY_FAMILY dump request and parses the answers
// until NLMSG_DONE.
func dump(fd int, seq uint32, req, buf []byte, state uint8) ([]Socket, error) {
	msg := make([]byte, sizeofNlmsg+len(req))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	copy(msg[sizeofNlmsg:], req)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []Socket
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		done, socks, err := parse(buf[:n], seq, req[0], state)
		if err != nil {
			return nil, err
		}
		out = append(out, socks...)
		if done {
			return out, nil
		}
	}
}

// parse reads the netlink messages in b, answers to request seq for
// family, of sockets in state; done is true at NLMSG_DONE.
func parse(b []byte, seq uint32, family, state uint8) (done bool, out []Socket, err error) {
	for len(b) >= sizeofNlmsg {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < sizeofNlmsg || l > len(b) {
			return false, nil, fmt.Errorf("netlink message of %d bytes in %d", l, len(b))
		}
		body := b[sizeofNlmsg:l]
		if binary.NativeEndian.Uint32(b[8:]) == seq {
			switch typ {
			case unix.NLMSG_DONE:
				return true, out, nil
			case unix.NLMSG_ERROR:
				if len(body) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(body)); e != 0 {
						return false, nil, unix.Errno(-e)
					}
				}
			case unix.SOCK_DIAG_BY_FAMILY:
				if s, ok := socket(body, family, state); ok {
					out = append(out, s)
				}
			}
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return false, out, nil
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// socket decodes one inet_diag_msg or unix_diag_msg with its attributes.
func socket(b []byte, family, state uint8) (Socket, bool) {
	if family != unix.AF_UNIX {
		if len(b) < sizeofInetMsg || b[0] != family || b[1] != state {
			return Socket{}, false
		}
		port := binary.BigEndian.Uint16(b[4:])
		var ip netip.Addr
		if family == unix.AF_INET {
			ip = netip.AddrFrom4([4]byte(b[8:12]))
		} else {
			ip = netip.AddrFrom16([16]byte(b[8:24]))
		}
		if state != tcpListen {
			ip = ip.Unmap() // a dual-stack socket's IPv4 peer: ::ffff:127.0.0.1
		}
		s := Socket{Addr: netip.AddrPortFrom(ip, port).String(), Inode: binary.NativeEndian.Uint32(b[68:])}
		if state == tcpListen {
			s.Queued, s.Backlog = binary.NativeEndian.Uint32(b[56:]), binary.NativeEndian.Uint32(b[60:])
		}
		return s, true
	}
	if len(b) < sizeofUnixMsg || b[0] != unix.AF_UNIX || b[1] != unix.SOCK_STREAM || b[2] != state {
		return Socket{}, false
	}
	s := Socket{Inode: binary.NativeEndian.Uint32(b[4:])}
	for a := b[sizeofUnixMsg:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:]))
		typ := binary.NativeEndian.Uint16(a[2:])
		if l < 4 || l > len(a) {
			break
		}
		v := a[4:l]
		switch {
		case typ == unixDiagName && len(v) > 0 && v[0] != 0: // abstract names start with NUL
			s.Addr = strings.TrimRight(string(v), "\x00")
		case typ == unixDiagRqlen && len(v) >= 8 && state == tcpListen:
			s.Queued = binary.NativeEndian.Uint32(v[0:])
			s.Backlog = binary.NativeEndian.Uint32(v[4:])
		}
		a = a[min(nlAlign(l), len(a)):]
	}
	return s, s.Addr != ""
}

// String is the socket as ss(8) would show it.
func (s Socket) String() string {
	return s.Addr + " queued " + strconv.FormatUint(uint64(s.Queued), 10) + "/" + strconv.FormatUint(uint64(s.Backlog), 10)
}
