// Package pool is corrald, the coordinator of corral's worker pools, and
// its D-Bus API (see docs/corrald.md).
//
// corrald is never in the data path: systemd holds the sockets and starts
// the instances; corrald watches them over D-Bus and asks systemd for
// jobs. Its decisions are pure and apart from its side effects:
//
//   - Plan compares what the operator asked of a pool (Desired) with what
//     systemd reports (Observed) and returns the Actions that close the
//     gap, the phase of every instance and when to look again.
//   - Tracker decides when a failed instance is restarted (exponential
//     backoff with jitter) and when its failures are a crash loop. Its
//     clock and random source come from the caller.
//   - Store keeps every pool's Desired in /var/lib/corral/state.json,
//     written atomically.
//   - Coordinator owns all of that in one goroutine: it observes, plans,
//     queues the jobs and answers the API.
//
// An instance is a unit NAME@I.service with I from 1: Count of them are
// wanted, the rest are surplus. A pool in reuseport mode has a socket per
// instance (NAME@I.socket), in shared mode one (NAME.socket, index 0).
//
// # Notes
//
//   - corrald never fights the operator. An instance stopped with
//     systemctl (inactive, not failed, it ran before, and corrald did not
//     start it) becomes held, and stays stopped until the operator starts
//     it again; a pool whose target was stopped is left alone.
//   - systemd restarts a crashed instance under its own Restart= policy
//     first; corrald only restarts the instances systemd gave up on
//     (failed), with ResetFailedUnit first, so that systemd's start limit
//     does not outlast corrald's backoff.
//   - A failure is identified by the unit's InactiveEnterTimestamp, so
//     seeing it again on the next reconcile does not count it twice.
//   - Stopping an instance in reuseport mode without its socket does not
//     stop it for long: the next connection hashed to that socket starts
//     it again, and corrald un-holds an instance that is active again.
//   - systemd unloads inactive units nothing references. An instance
//     unknown to systemd looks, to Plan, like one that never ran.
package pool
