package cli

import (
	"regexp"
	"strings"
)

// option is a command-line option: --long, and -short when short is set.
// takesValue options take the next argument (or --long=VALUE) as value.
type option struct {
	long, short string
	takesValue  bool
	repeat      bool // may be given more than once: the values joined by "\n"
}

var negativeNumber = regexp.MustCompile(`^-[0-9]+$`)

// parseOptions splits the arguments of command name into options, by long
// name ("true" for options without a value), and operands. Options may
// come before, between or after operands; "--" ends them. A negative
// number such as "-2" is an operand, for 'corral scale app -2'. An unknown
// option or a missing value is a usage error naming the command's usage.
func parseOptions(name string, args []string, opts ...option) (map[string]string, []string, error) {
	set := map[string]string{}
	var operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			operands = append(operands, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" || negativeNumber.MatchString(a) {
			operands = append(operands, a)
			continue
		}
		key, value, hasValue := a, "", false
		if strings.HasPrefix(a, "--") {
			key, value, hasValue = strings.Cut(a, "=")
		}
		o, ok := findOption(key, opts)
		if !ok {
			return nil, nil, badUsage(name, "unknown option %q", a)
		}
		switch {
		case !o.takesValue && hasValue:
			return nil, nil, badUsage(name, "option --%s takes no value", o.long)
		case o.takesValue && !hasValue:
			if i+1 >= len(args) {
				return nil, nil, badUsage(name, "option %s needs a value", key)
			}
			i++
			value = args[i]
		case !o.takesValue:
			value = "true"
		}
		if prev, ok := set[o.long]; ok && o.repeat {
			value = prev + "\n" + value
		}
		set[o.long] = value
	}
	return set, operands, nil
}

func findOption(key string, opts []option) (option, bool) {
	for _, o := range opts {
		if key == "--"+o.long || o.short != "" && key == "-"+o.short {
			return o, true
		}
	}
	return option{}, false
}

// badUsage is a usage error of command name that ends with its usage.
func badUsage(name, format string, args ...any) error {
	u := "corral " + name
	if c, ok := lookup(name); ok {
		u = c.usage()
	}
	return usageError("%s: "+format+"; usage: %s", append(append([]any{name}, args...), u)...)
}
