package api

import (
	"regexp"
	"strconv"
	"strings"
)

// The rules for what names a pool, an instance and a count, in one place
// for the corral command, the pool-file parser and corrald.

// MaxInstances bounds a pool's instance count, and so every instance
// number.
const MaxInstances = 1024

// MaxNameLen bounds a pool's name.
const MaxNameLen = 64

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// CheckPoolName reports whether name may name a pool: letters, digits,
// '-', '_' and '.', starting with a letter or digit, at most MaxNameLen
// long, and not ending in a unit type. Its error wraps ErrNoPool: no pool
// can have that name.
func CheckPoolName(name string) error {
	switch {
	case name == "":
		return wrapf(ErrNoPool, `bad pool name "": a pool needs a name`)
	case len(name) > MaxNameLen:
		return wrapf(ErrNoPool, "bad pool name %q: it is longer than %d characters", name, MaxNameLen)
	case !nameRE.MatchString(name):
		return wrapf(ErrNoPool, "bad pool name %q: a pool name has only letters, digits, '-', '_' and '.', and starts with a letter or digit", name)
	}
	for _, t := range []string{".service", ".socket", ".target"} {
		if strings.HasSuffix(name, t) {
			return wrapf(ErrNoPool, "bad pool name %q: it ends in a unit type; name the pool only, e.g. %s", name, strings.TrimSuffix(name, t))
		}
	}
	return nil
}

// InstanceTarget returns "POOL@I".
func InstanceTarget(pool string, i int) string { return pool + "@" + strconv.Itoa(i) }

// ParseInstance splits "app@3.service", "app@3.socket" or "app@3" into
// ("app", 3). An instance number above MaxInstances, or not written as
// strconv.Itoa writes it, is no instance of a pool: corrald neither counts,
// adopts nor messages app@99999, so no unit name can make a pool's count
// unbounded.
func ParseInstance(unit string) (pool string, i int, ok bool) {
	s := strings.TrimSuffix(strings.TrimSuffix(unit, ".service"), ".socket")
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return "", 0, false
	}
	n, ok := count(s[at+1:])
	if !ok {
		return "", 0, false
	}
	return s[:at], n, true
}

// count parses a number from 1 to MaxInstances written without sign or
// leading zeros.
func count(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxInstances || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// ParseTarget checks "POOL" or "POOL@I" and splits it; i is 0 for a whole
// pool. Its errors wrap ErrNoPool or ErrNoInstance.
func ParseTarget(target string) (pool string, i int, err error) {
	name, inst, hasInst := strings.Cut(target, "@")
	if err := CheckPoolName(name); err != nil {
		return "", 0, err
	}
	if !hasInst {
		return name, 0, nil
	}
	n, ok := count(inst)
	if !ok {
		return "", 0, wrapf(ErrNoInstance, "bad instance in %q: give POOL@I with I a number from 1 to %d, e.g. %s@1", target, MaxInstances, name)
	}
	return name, n, nil
}

// Scale is a parsed scale spec: "N", "+N", "-N" or "auto".
type Scale struct {
	N        int // the count, or with Relative the change (negative: fewer)
	Relative bool
	Auto     bool // one instance per CPU
}

// ParseScale checks a scale spec. Its error wraps ErrBadSpec.
func ParseScale(spec string) (Scale, error) {
	if spec == "auto" {
		return Scale{Auto: true}, nil
	}
	digits := strings.TrimLeft(spec, "+-")
	if n, ok := count(digits); ok && len(spec)-len(digits) <= 1 {
		switch spec[0] {
		case '+':
			return Scale{N: n, Relative: true}, nil
		case '-':
			return Scale{N: -n, Relative: true}, nil
		}
		return Scale{N: n}, nil
	}
	return Scale{}, wrapf(ErrBadSpec, "bad count %q: give N (1 to %d), +N or -N to add or remove N, or auto for one per CPU", spec, MaxInstances)
}

// Count applies s to a pool that has cur instances on a host with cpus
// CPUs. The result must lie from 1 to MaxInstances; the error wraps
// ErrBadSpec.
func (s Scale) Count(cur, cpus int) (int, error) {
	n := s.N
	switch {
	case s.Auto:
		n = min(max(cpus, 1), MaxInstances)
	case s.Relative:
		n += cur
	}
	if n < 1 || n > MaxInstances {
		return 0, wrapf(ErrBadSpec, "the pool would have %d instances; it needs 1 to %d (to stop it: corral stop POOL)", n, MaxInstances)
	}
	return n, nil
}
