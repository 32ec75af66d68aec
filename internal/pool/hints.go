package pool

import "sync"

// hints collects what changed (systemd signals, finished operations) for
// the Run goroutine, coalescing without losing any: a burst of thousands of
// signals, as a daemon-reload sends while Run is busy, becomes one wake-up
// with the set of pools to look at, and the "everything, pool files
// included" hint of a reload is never dropped. (A bounded channel that drops
// when full left a new pool unknown until the next resync, minutes later.)
type hints struct {
	wake chan struct{} // one buffered token: something was added since the last take

	mu    sync.Mutex
	all   bool            // re-read the pool files and mark every pool
	pools map[string]bool // pools to mark
	now   map[string]bool // of them, those that should not wait for the debounce
}

func newHints() *hints {
	return &hints{wake: make(chan struct{}, 1), pools: map[string]bool{}, now: map[string]bool{}}
}

// add records a hint about pool, "" for everything. It never blocks.
func (h *hints) add(pool string) { h.put(pool, false) }

// addNow records a hint about pool that is acted on without waiting for
// the burst to end.
func (h *hints) addNow(pool string) { h.put(pool, true) }

func (h *hints) put(pool string, now bool) {
	h.mu.Lock()
	if now && pool != "" {
		h.now[pool] = true
	}
	if pool == "" {
		h.all = true
	} else {
		h.pools[pool] = true
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default: // a wake-up is already pending; it will take this hint too
	}
}

// take returns and clears what was added since the last take; now: the
// pools of them that came with addNow.
func (h *hints) take() (all bool, pools, now []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	all, h.all = h.all, false
	for p := range h.now {
		now = append(now, p)
	}
	clear(h.now)
	for p := range h.pools {
		pools = append(pools, p)
	}
	clear(h.pools)
	return all, pools, now
}
