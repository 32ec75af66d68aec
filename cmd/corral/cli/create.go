package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/units"
)

// createOptions are the options of `corral start NAME … -- COMMAND`.
var createOptions = []option{
	{long: "listen", short: "l", takesValue: true, repeat: true},
	{long: "instances", short: "i", takesValue: true},
	{long: "env", short: "e", takesValue: true, repeat: true},
	{long: "cwd", takesValue: true},
}

// runStart is `corral start POOL[@I]`, or, with a command after the name,
// `corral start NAME --listen ADDR … -- COMMAND ARGS…`, which makes the
// pool first (runCreate).
func runStart(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("start", args, createOptions...)
	if err != nil {
		return err
	}
	if len(operands) > 1 || len(opts) > 0 {
		return runCreate(ctx, env, opts, operands)
	}
	return control(ctx, env, "start", args, api.API.Start, "started %s\n")
}

// runCreate writes a pool file for a command line, makes it in effect and
// starts the pool, as `pm2 start server.js -i max` does. It refuses to
// replace a pool file, and leaves no file behind when it fails.
func runCreate(ctx context.Context, env *Env, opts map[string]string, operands []string) error {
	if len(operands) < 2 {
		return badUsage("start", "give the command after the pool's name, such as: corral start shop --listen 127.0.0.1:3000 -- node server.js")
	}
	name := operands[0]
	if err := checkPoolName("start", name); err != nil {
		return err
	}
	if opts["listen"] == "" {
		return badUsage("start", "give --listen ADDR, the address systemd listens on for %s, such as --listen 127.0.0.1:3000 (a Node app's listen(3000) is served on it)", name)
	}
	path := filepath.Join(env.PoolDir, name+units.Ext)
	if _, err := os.Lstat(path); err == nil {
		return failed("start %s: %s exists: 'corral start %s' starts that pool; 'corral delete %s' first to make it again", name, path, name, name)
	}
	src, err := poolSource(name, opts, operands[1:])
	if err != nil {
		return err
	}
	p, err := checkNewPool(env, path, name, src)
	if err != nil {
		return err
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	if err := writeNew(path, src); err != nil {
		return failed("start %s: %v", name, err)
	}
	report, err := apply(ctx, corrald)
	if err != nil {
		return undoCreate(ctx, env, corrald, name, path, err)
	}
	fmt.Fprintf(env.Stdout, "%s: created %s\n", name, path)
	printOthers(env, report, name)
	if err := corrald.Start(ctx, name); err != nil {
		return apiError(env, "start "+name, name, err)
	}
	addrs := make([]string, len(p.Listen))
	for i, l := range p.Listen {
		addrs[i] = l.Address
	}
	fmt.Fprintf(env.Stdout, "%s: started %d instance(s) on %s ('corral list' shows them; 'corral delete %s' removes the pool)\n",
		name, p.Count(env.CPUs), strings.Join(addrs, " "), name)
	return nil
}

// undoCreate takes back a pool file whose apply failed: if corrald
// changed nothing (another file is invalid, the caller may not, corrald
// is gone) by removing it, else as delete does.
func undoCreate(ctx context.Context, env *Env, corrald api.API, name, path string, cause error) error {
	switch {
	case errors.Is(cause, api.ErrInvalidConfig):
		os.Remove(path)
		return failed("start %s: nothing was made: corrald applies every pool file, and one is invalid: %v; fix it ('corral validate') and try again", name, cause)
	case errors.Is(cause, api.ErrDenied), errors.Is(cause, api.ErrNotRunning):
		os.Remove(path)
		return apiError(env, "start "+name, name, cause)
	}
	corrald.Stop(ctx, name)
	os.Remove(path)
	if _, err := apply(ctx, corrald); err != nil {
		return failed("start %s: %v; its file is removed again, but its units stay until 'corral apply' succeeds: %v", name, cause, err)
	}
	return failed("start %s: %v; the pool was taken away again", name, cause)
}

// apply is corrald's Apply, with a pool that failed to apply as an error
// (corrald reports it as a change, so that `corral apply` prints them all).
func apply(ctx context.Context, corrald api.API) ([]api.Change, error) {
	report, err := corrald.Apply(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range report {
		if c.Action == "failed" {
			return report, fmt.Errorf("%w: %s: %s", api.ErrFailed, c.Pool, c.Detail)
		}
	}
	return report, nil
}

// printOthers prints what else an apply changed: edits of other pool files
// that were waiting for one.
func printOthers(env *Env, report []api.Change, name string) {
	for _, c := range report {
		if c.Pool == name || c.Action == "unchanged" {
			continue
		}
		fmt.Fprintln(env.Stdout, changeLine(c)+"; applied with it")
	}
}

// poolSource writes the pool file for a command line.
func poolSource(name string, opts map[string]string, command []string) ([]byte, error) {
	prog := command[0]
	switch {
	case !strings.Contains(prog, "/"):
		found, err := exec.LookPath(prog)
		if err != nil {
			return nil, badUsage("start", "%s: not found in PATH: give its absolute path", prog)
		}
		prog = found
	case !filepath.IsAbs(prog):
		abs, err := filepath.Abs(prog)
		if err != nil {
			return nil, badUsage("start", "%s: %v", prog, err)
		}
		prog = abs
	}
	command = append([]string{filepath.Clean(prog)}, command[1:]...)

	var b strings.Builder
	fmt.Fprintf(&b, "# Made by 'corral start %s'. Edit it and run 'corral apply'; 'corral delete %s' removes the pool.\n", name, name)
	b.WriteString("exec = " + tomlArray(command) + "\n")
	b.WriteString("listen = " + tomlArray(strings.Split(opts["listen"], "\n")) + "\n")
	b.WriteString("instances = " + instancesValue(opts["instances"]) + "\n")
	cwd := opts["cwd"]
	if cwd == "" {
		cwd, _ = os.Getwd()
	} else if abs, err := filepath.Abs(cwd); err == nil {
		cwd = abs
	}
	if cwd != "" && cwd != "/" {
		b.WriteString("working_directory = " + tomlString(cwd) + "\n")
	}
	if e := opts["env"]; e != "" {
		var kvs []string
		for _, kv := range strings.Split(e, "\n") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, badUsage("start", "--env %q: give NAME=VALUE", kv)
			}
			kvs = append(kvs, tomlString(k)+" = "+tomlString(v))
		}
		b.WriteString("environment = { " + strings.Join(kvs, ", ") + " }\n")
	}
	if !utf8.ValidString(b.String()) {
		return nil, badUsage("start", "the command line is not UTF-8 text")
	}
	return []byte(b.String()), nil
}

// instancesValue is the instances key for --instances: a count, or "auto"
// for auto, max or 0 (pm2's -i max and -i 0).
func instancesValue(s string) string {
	switch s {
	case "", "auto", "max", "0":
		return `"auto"`
	}
	if _, err := strconv.Atoi(s); err == nil {
		return s
	}
	return tomlString(s) // the parser says what is wrong with it
}

// checkNewPool checks the file to be written as corral validate would:
// its keys and values, the host (the program exists…) and the addresses
// of the pools installed.
func checkNewPool(env *Env, path, name string, src []byte) (*units.Pool, error) {
	p, err := units.Parse(path, name, src)
	var errs units.Errors
	if err != nil {
		if !errors.As(err, &errs) {
			return nil, failed("start %s: %v", name, err)
		}
	} else {
		host := units.DefaultHost()
		errs = host.Check(p)
		dirFiles, _ := units.PoolFiles(env.PoolDir)
		errs = append(errs, overlapsWithInstalled([]*units.Pool{p}, []string{path}, dirFiles, host)...)
	}
	if len(errs) == 0 {
		return p, nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Msg
	}
	slices.Sort(msgs)
	return nil, failed("start %s: nothing was made: %s", name, strings.Join(slices.Compact(msgs), "; "))
}

// writeNew writes data to path through a hidden temporary file in the same
// directory, linked into place only if path does not exist: a reader sees
// the whole file or none, and an existing file is never replaced.
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("cannot write in %s: run it as root (sudo)", dir)
		}
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s was made meanwhile: it is left as it is", path)
		}
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tomlArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// runDelete is `corral delete NAME`, as pm2 delete: it stops the pool's
// instances and sockets, removes its file and makes that in effect, so
// that no unit and no stored state is left. A pool that is not there is
// not an error: it is already deleted.
func runDelete(ctx context.Context, env *Env, args []string) error {
	_, operands, err := parseOptions("delete", args)
	if err != nil {
		return err
	}
	name, err := onePool("delete", operands, "give the pool to delete")
	if err != nil {
		return err
	}
	if err := checkPoolName("delete", name); err != nil {
		return err
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	pools, err := corrald.ListPools(ctx)
	if err != nil {
		return apiError(env, "delete "+name, name, err)
	}
	known := slices.ContainsFunc(pools, func(p api.PoolInfo) bool { return p.Name == name })
	path := filepath.Join(env.PoolDir, name+units.Ext)
	_, statErr := os.Lstat(path)
	if !known && errors.Is(statErr, fs.ErrNotExist) {
		fmt.Fprintf(env.Stdout, "%s: no such pool; nothing to delete\n", name)
		return nil
	}
	if known {
		if err := corrald.Stop(ctx, name); err != nil && !errors.Is(err, api.ErrNoPool) {
			return apiError(env, "delete "+name, name, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return failed("delete %s: stopped, but its file stays: %v", name, err)
	}
	report, err := apply(ctx, corrald)
	if err != nil {
		return failed("delete %s: stopped and %s removed, but its units stay loaded until 'corral apply' succeeds: %v", name, path, err)
	}
	printOthers(env, report, name)
	fmt.Fprintf(env.Stdout, "%s: deleted (instances and sockets stopped, %s removed)\n", name, path)
	return nil
}
