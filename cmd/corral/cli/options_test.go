package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	opts := []option{{long: "follow", short: "f"}, {long: "lines", short: "n", takesValue: true}, {long: "json"}}
	for _, tt := range []struct {
		args []string
		want string // the options and operands, or the error
	}{
		{nil, "map[] []"},
		{[]string{"app", "-f", "-n", "5"}, "map[follow:true lines:5] [app]"},
		{[]string{"--lines=7", "app", "--json", "x"}, "map[json:true lines:7] [app x]"},
		{[]string{"app", "-2", "+3"}, "map[] [app -2 +3]"},
		{[]string{"--", "-f", "--json"}, "map[] [-f --json]"},
		{[]string{"-"}, "map[] [-]"},
		{[]string{"-n"}, "logs: option -n needs a value; usage: corral logs POOL [-f] [-n N] [--instance I]"},
		{[]string{"--json=1"}, "logs: option --json takes no value; usage: corral logs POOL [-f] [-n N] [--instance I]"},
		{[]string{"-json"}, `logs: unknown option "-json"; usage: corral logs POOL [-f] [-n N] [--instance I]`},
		{[]string{"--f"}, `logs: unknown option "--f"`},
	} {
		set, operands, err := parseOptions("logs", tt.args, opts...)
		got := fmt.Sprint(set, " ", operands)
		if err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("parseOptions(%q) = %s, want %s", tt.args, got, tt.want)
		}
	}
}

func TestHelp(t *testing.T) {
	env, out, _ := testEnv(newFake(), nil)
	if code, e := runEnv(t, context.Background(), env, "help"); code != ExitOK {
		t.Fatal(e)
	}
	for _, c := range commands {
		if !strings.Contains(out.String(), "\n  "+c.name) || !strings.Contains(out.String(), c.args+"  ") {
			t.Errorf("help lacks %s:\n%s", c.name, out)
		}
	}
	if !strings.Contains(out.String(), "\n  list, ls [--json]  ") || !strings.Contains(out.String(), "3 permission denied, 4 corrald not running") {
		t.Errorf("help lacks the exit codes:\n%s", out)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"help", "scale"}, ExitOK, "usage: corral scale POOL N|+N|-N|auto\n  set how many"},
		{[]string{"help", "ls"}, ExitOK, "usage: corral list [--json]"},
		{[]string{"status", "--help"}, ExitOK, "usage: corral status POOL [--json]"},
		{[]string{"logs", "app", "-h"}, ExitOK, "usage: corral logs POOL"},
		{[]string{"help", "frob"}, ExitUsage, `help: unknown command "frob"`},
		{[]string{"help", "a", "b"}, ExitUsage, "help takes at most one command"},
		{[]string{"list", "--all"}, ExitUsage, `list: unknown option "--all"; usage: corral list [--json]`},
		{[]string{"list", "app"}, ExitUsage, `list: unexpected argument "app" ('corral status app' shows one pool)`},
		{[]string{"ls"}, ExitOK, "POOL/INSTANCE"},
	} {
		env, out, _ := testEnv(newFake(), nil)
		if code, e := runEnv(t, context.Background(), env, tt.args...); code != tt.code || !strings.Contains(out.String()+e, tt.want) {
			t.Errorf("corral %v: exit %d, output %q; want exit %d and %q", tt.args, code, out.String()+e, tt.code, tt.want)
		}
	}
}
