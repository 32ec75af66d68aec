package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/corral-pool/corral/internal/units"
)

// runValidate checks pool files: syntax and values (with file:line:col),
// names that shadow units on the host, addresses used by two pools, and
// what would stop instances from starting here (a missing exec binary…).
// It prints every problem and, for valid pools, a summary with the
// sandbox's exposure and what each loosening costs.
func runValidate(ctx context.Context, env *Env, args []string) error {
	var given []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			return usageError("validate: unknown option %q; usage: corral validate [FILE...]", a)
		}
		given = append(given, a)
	}
	dirFiles, err := units.PoolFiles(env.PoolDir)
	if err != nil {
		return &ExitError{Code: ExitInvalid, Err: err}
	}
	files := given
	if len(files) == 0 {
		files = dirFiles
		if len(files) == 0 {
			fmt.Fprintf(env.Stdout, "no pool files in %s\n", env.PoolDir)
			return nil
		}
	}
	host := units.DefaultHost()
	pools, errs := units.LoadAll(files, host)
	if len(given) > 0 {
		errs = append(errs, overlapsWithInstalled(pools, given, dirFiles, host)...)
	}
	bad := map[string]bool{}
	for _, e := range errs {
		bad[e.File] = true
	}
	for _, p := range pools {
		for _, e := range host.Check(p) {
			errs = append(errs, e)
			bad[e.File] = true
		}
	}
	for _, e := range errs {
		fmt.Fprintln(env.Stderr, e)
	}
	for _, p := range pools {
		if bad[p.Path] {
			continue
		}
		summarize(ctx, env, p)
	}
	if len(errs) > 0 {
		n := len(bad)
		return &ExitError{Code: ExitInvalid,
			Err: fmt.Errorf("%d of %d pool file(s) invalid: fix the errors above", n, len(files))}
	}
	return nil
}

// overlapsWithInstalled checks pools given on the command line against the
// installed pools they would run beside (other than a file of the same
// name, which they would replace).
func overlapsWithInstalled(pools []*units.Pool, given, dirFiles []string, host units.Host) units.Errors {
	names := map[string]bool{}
	for _, g := range given {
		if n, err := units.NameFromPath(g); err == nil {
			names[n] = true
		}
	}
	var others []string
	for _, f := range dirFiles {
		if n, _ := units.NameFromPath(f); !names[n] {
			others = append(others, f)
		}
	}
	installed, _ := units.LoadAll(others, host)
	var errs units.Errors
	for _, p := range pools {
		for _, l := range p.Listen {
			for _, o := range installed {
				for _, ol := range o.Listen {
					if l.Overlaps(ol) {
						errs = append(errs, &units.Error{File: p.Path,
							Msg: fmt.Sprintf("listen address %s overlaps %s of installed pool %q (%s): give each pool its own port or socket path", l.Address, ol.Address, o.Name, o.Path)})
					}
				}
			}
		}
	}
	return errs
}

func summarize(ctx context.Context, env *Env, p *units.Pool) {
	w := env.Stdout
	n := fmt.Sprint(p.Instances)
	if p.Instances == 0 {
		n = fmt.Sprintf("auto (%d here)", p.Count(env.CPUs))
	}
	addrs := make([]string, len(p.Listen))
	for i, l := range p.Listen {
		addrs[i] = l.Address
	}
	fmt.Fprintf(w, "%s: ok (%s)\n", p.Name, filepath.Clean(p.Path))
	fmt.Fprintf(w, "  instances  %s, balance %s, readiness %s\n", n, p.Balance, p.Readiness)
	fmt.Fprintf(w, "  listen     %s\n", strings.Join(addrs, " "))
	fmt.Fprintf(w, "  units      %s.target, %s@.service, %s\n", p.Name, p.Name, socketName(p))
	user := "a dynamic user"
	if p.User != "" {
		user = p.User
	}
	fmt.Fprintf(w, "  runs as    %s; start on boot: %v\n", user, p.StartOnBoot)
	if p.NodePreload {
		fmt.Fprintf(w, "  node       preload on: the app's listen() of %s is served on systemd's socket, SIGTERM drains, process.on('message') gets messages; node_preload = false turns it off\n", listenTargets(p))
	}

	score, err := units.Exposure(ctx, p)
	if err != nil {
		fmt.Fprintf(w, "  sandbox    exposure unknown: %v\n", err)
		for _, l := range units.Loosenings(p) {
			fmt.Fprintf(w, "    loosened: %s\n", l)
		}
		return
	}
	fmt.Fprintf(w, "  sandbox    exposure %.1f (systemd-analyze security: 0 tightest, 10 none)\n", score)
	base, ls, each, err := units.LooseningCosts(ctx, p)
	if err != nil || len(ls) == 0 {
		return
	}
	for i, l := range ls {
		fmt.Fprintf(w, "    loosened: %s (exposure %.1f → %.1f)\n", l, base, each[i])
	}
	if p.Sandbox.Network == units.NetworkNone {
		fmt.Fprintf(w, "    note: workers cannot open network connections (databases, APIs); set sandbox.network = \"outbound\" if they must\n")
	}
}

// listenTargets names what a Node app's listen() may ask for: "3000",
// "3000 or 3001", a socket path.
func listenTargets(p *units.Pool) string {
	var ts []string
	for _, l := range p.Listen {
		t := l.Address
		if !l.Unix {
			t = t[strings.LastIndex(t, ":")+1:]
		}
		if !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	return strings.Join(ts, " or ")
}

func socketName(p *units.Pool) string {
	if p.Balance == units.BalanceShared {
		return p.Name + ".socket"
	}
	return p.Name + "@.socket (one per instance)"
}
