package units

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
)

// dynUserRE is systemd's strict user name rule (the one it applies to the
// users it makes itself): at most 31 characters.
var dynUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}$`)

// DynamicUserName is the name of the dynamic user a pool's workers run as
// when the pool file names no user: "corral-" and the pool name, or, when
// that is not a valid user name (upper case, '.', too long), "corral-" and 16
// hex digits of the name's SHA-256.
//
// The worker unit names it in User= next to DynamicUser=yes. Without User=,
// systemd takes the unit's prefix, the bare pool name, and when a static
// account of that name exists it runs the workers as that account: a pool
// named root would run as uid 0, one named postgres as postgres. The prefix
// keeps the name out of the accounts Debian makes, and Host.Shadows refuses
// a pool whose name is an account all the same.
func DynamicUserName(pool string) string {
	if n := "corral-" + pool; dynUserRE.MatchString(n) {
		return n
	}
	sum := sha256.Sum256([]byte(pool))
	return "corral-" + hex.EncodeToString(sum[:8])
}
