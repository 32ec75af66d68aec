package units

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestManPageKeys: corral.toml(5)'s KEYS section names every key of the
// table keys and no other, and says each default the table gives.
func TestManPageKeys(t *testing.T) {
	b, err := os.ReadFile("../../packaging/man/corral.toml.5")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "\n.SH KEYS\n")
	section, _, _ = strings.Cut(section, "\n.SH ")
	text := strings.NewReplacer(`\-`, "-", `\(dq`, `"`, `\fB`, "", `\fR`, "", `\fP`, "", `\fI`, "").Replace(section)

	// Each entry is .TP (or .TQ) then .B and its key(s); its paragraph
	// runs to the next .TP or .SS.
	documented := map[string]string{} // key: its paragraph
	table := ""
	var open []string // keys of the paragraph being read
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, ".SS "):
			table = strings.Trim(strings.TrimPrefix(l, ".SS "), `"[]`)
			documented[table] = ""
			open = nil
		case l == ".TP":
			open = nil
		case (i > 0 && (lines[i-1] == ".TP" || lines[i-1] == ".TQ")) && strings.HasPrefix(l, ".B "):
			for _, k := range strings.Split(strings.TrimPrefix(l, ".B "), ", ") {
				if table != "" {
					k = table + "." + k
				}
				open = append(open, k)
				documented[k] = ""
			}
		default:
			for _, k := range open {
				documented[k] += l + "\n"
			}
		}
	}
	var inTable []string
	for _, f := range keys {
		inTable = append(inTable, f.key)
		par, ok := documented[f.key]
		if !ok {
			t.Errorf("corral.toml(5) does not describe %s", f.key)
			continue
		}
		if f.def != "" && !regexp.MustCompile(`(^|[^\w.])"?`+regexp.QuoteMeta(f.def)+`"?($|[^\w.])`).MatchString(par) {
			t.Errorf("corral.toml(5) does not give %s's default, %s:\n%s", f.key, f.def, par)
		}
	}
	for k := range documented {
		if !slices.Contains(inTable, k) {
			t.Errorf("corral.toml(5) describes %s, which pool files do not have", k)
		}
	}
}

// TestDefaults: a pool file with only what is required gets every
// default of the table.
func TestDefaults(t *testing.T) {
	p, err := Parse("app.toml", "app", []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:1\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if p.StopTimeout != d.StopTimeout || p.Restart != d.Restart || p.Readiness != d.Readiness || !p.StartOnBoot ||
		p.MaxUnavailable != 1 || p.ReadyDelay != d.ReadyDelay || !p.Sandbox.WriteExecuteMemory || p.Sandbox.Network != NetworkNone {
		t.Errorf("parsed %+v\nwant the defaults %+v", p, d)
	}
	if d.StopTimeout.String() != "30s" || d.Restart.Burst != 5 || d.Restart.Policy != "on-failure" {
		t.Errorf("defaults %+v", d)
	}
}
