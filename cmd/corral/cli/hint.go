package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/corral-pool/corral/internal/units"
)

// runHint is run by systemd as ExecStopPost= of every worker instance. When
// an instance failed, it reads systemd's $SERVICE_RESULT, $EXIT_CODE and
// $EXIT_STATUS (systemd.exec(5)) and prints one line naming the pool
// setting that most likely stopped it, which lands in the instance's
// journal. It prints nothing for a clean stop and always succeeds.
func runHint(_ context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageError("hint takes no arguments; systemd runs it after a worker stops")
	}
	name := os.Getenv("CORRAL_POOL")
	var pool *units.Pool
	if name != "" {
		pool, _ = units.Load(filepath.Join(env.PoolDir, name+units.Ext))
	}
	if h := Hint(pool, os.Getenv("SERVICE_RESULT"), os.Getenv("EXIT_CODE"), os.Getenv("EXIT_STATUS")); h != "" {
		fmt.Fprintln(env.Stderr, "corral:", h)
	}
	return nil
}

// Hint returns what to change when an instance of pool (nil if its file
// cannot be read) ended with systemd's result, code and status, or "".
func Hint(pool *units.Pool, result, code, status string) string {
	switch result {
	case "", "success":
		return ""
	case "oom-kill":
		if pool != nil && pool.MemoryMax != "" {
			return fmt.Sprintf("the instance ran out of memory (memory_max = %s) and the kernel killed it: raise memory_max in %s, or set memory_high below it so that corrald recycles the instance gracefully first", pool.MemoryMax, pool.Path)
		}
		return "the instance ran out of memory and the kernel killed it: see the OOM killer's lines in 'journalctl -k'"
	case "watchdog":
		w := "watchdog"
		if pool != nil && pool.Watchdog > 0 {
			w = fmt.Sprintf("watchdog = %q", pool.Watchdog.String())
		}
		return fmt.Sprintf("hung: the worker stopped showing it is alive (%s) and was killed; with SIGABRT a Go worker printed every goroutine's stack above this line", w)
	}
	if code == "exited" {
		switch status {
		case "200":
			return "the instance could not enter working_directory: check that it exists and the pool's user can enter it (corral validate)"
		case "203":
			return "exec[0] could not be executed: check that it exists and is executable by the pool's user (corral validate)"
		case "217", "216":
			return "the pool's user or group could not be set up: check user and group in the pool file (corral validate)"
		case "226":
			return "the sandbox could not be set up: every path in sandbox.writable_paths must exist; create it or remove it from the pool file"
		case "228", "218", "233":
			return "the sandbox could not be set up on this kernel: see the instance's journal above this line"
		}
		return ""
	}
	if code == "killed" || code == "dumped" {
		switch status {
		case "TRAP", "ILL", "SEGV", "ABRT", "BUS":
			if pool != nil && !pool.Sandbox.WriteExecuteMemory {
				return fmt.Sprintf("the worker died of SIG%s; sandbox.write_execute_memory = false forbids the writable executable memory that JIT runtimes (Node's V8, PyPy, LuaJIT) need: set it to true in %s if the worker is one", status, pool.Path)
			}
		case "SYS":
			return "the worker was killed by the system call filter: a system call outside @system-service was made; report it, as corral's filter returns EPERM rather than killing"
		}
	}
	return ""
}
