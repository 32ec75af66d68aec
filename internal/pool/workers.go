package pool

import (
	"context"
	"errors"
	"fmt"

	"github.com/corral-pool/corral/api"
)

// Workers tells which pool's worker a process is, from the unit it runs
// in: who connects to the message socket, and who calls over the bus.
type Workers struct {
	co     *Coordinator
	unitOf func(ctx context.Context, pid uint32) (string, error)
}

// NewWorkers returns the workers of co's pools; unitOf finds the unit of a
// process (ProcessUnit).
func NewWorkers(co *Coordinator, unitOf func(ctx context.Context, pid uint32) (string, error)) *Workers {
	return &Workers{co: co, unitOf: unitOf}
}

// Worker returns the pool and instance of the process pid: the relay's
// Config.Identify. The process must run in an instance unit of a pool
// corrald manages.
func (w *Workers) Worker(ctx context.Context, pid int32) (string, int, error) {
	unit, pool, i, err := w.instanceOf(ctx, uint32(pid))
	if err != nil {
		return "", 0, fmt.Errorf("%w: only the workers of corral pools may connect", err)
	}
	if pool == "" {
		if unit == "" {
			unit = "no unit"
		}
		return "", 0, fmt.Errorf("process %d runs in %s, not in an instance of a corral pool: only the workers of corral pools may connect", pid, unit)
	}
	return pool, i, nil
}

// Pool returns the pool whose worker process pid is, or "" for a
// process that is no worker. It fails closed: when the process cannot be
// looked up, the error says so and the caller is refused, never taken for
// an operator.
func (w *Workers) Pool(ctx context.Context, pid uint32) (string, error) {
	if pid == 0 {
		return "", errors.New("the bus did not say which process called")
	}
	_, pool, _, err := w.instanceOf(ctx, pid)
	return pool, err
}

// instanceOf returns the unit of process pid and, if it is an instance of
// a pool corrald manages, the pool and index. err is set only when the
// process cannot be looked up.
func (w *Workers) instanceOf(ctx context.Context, pid uint32) (unit, pool string, index int, err error) {
	if w.unitOf == nil {
		return "", "", 0, errors.New("corrald cannot look up processes")
	}
	unit, err = w.unitOf(ctx, pid)
	if err != nil {
		return "", "", 0, fmt.Errorf("cannot tell which unit process %d runs in: %w", pid, err)
	}
	p, i, ok := api.ParseInstance(unit)
	if ok && unit == InstanceName(p, i) {
		ok = false
		if err := w.co.do(ctx, func(pools poolSet) { _, ok = pools[p] }); err != nil {
			return "", "", 0, err
		}
		if ok {
			return unit, p, i, nil
		}
	}
	return unit, "", 0, nil
}
