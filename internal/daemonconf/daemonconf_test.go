package daemonconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Config
		wantErr string
	}{
		{"", Config{}, ""},
		{"# nothing\n", Config{}, ""},
		{"[metrics]\nlisten = \"127.0.0.1:9810\"\n[agent]\nlisten = \":9811\"\n", Config{Metrics: "127.0.0.1:9810", Agent: ":9811"}, ""},
		{"[metrics]\nlisten = \"[::1]:9810\"\n", Config{Metrics: "[::1]:9810"}, ""},
		{"[metrics]\nlisten = \"localhost:9810\"\n", Config{}, `corral.toml: [metrics] listen = "localhost:9810": "localhost" is not an IP address`},
		{"[agent]\nlisten = \"9811\"\n", Config{}, `[agent] listen = "9811": not an address`},
		{"[agent]\nlisten = \"/run/agent.sock\"\n", Config{}, "a TCP address is needed here"},
		{"[agent]\nlisten = \":0\"\n", Config{}, "the port must be a number from 1 to 65535"},
		{"[metrics]\nlisten = \":9810\"\n[agent]\nlisten = \":9810\"\n", Config{}, "both listen on :9810: give each a port of its own"},
		{"[metrics]\nlisten = 9810\n", Config{}, "corral.toml"},
		{"[metrics]\nlisen = \":9810\"\n", Config{}, "unknown setting metrics.lisen"},
		{"[metric]\nlisten = \":9810\"\n", Config{}, "unknown setting metric, metric.listen"},
		{"[metrics\n", Config{}, "corral.toml:2: invalid TOML"},
	} {
		got, err := Parse("corral.toml", []byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) = %v, want an error with %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse(%q): the error is not one line: %q", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if c, err := Load(filepath.Join(dir, "none.toml")); err != nil || c != (Config{}) {
		t.Errorf("a missing file: %+v, %v; want everything off", c, err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#\n", maxSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a huge file: %v", err)
	}
}

func TestUnits(t *testing.T) {
	if u := (Config{}).Units(); len(u) != 0 {
		t.Errorf("nothing configured: %v", u)
	}
	us := Config{Metrics: "127.0.0.1:9810", Agent: ":9811"}.Units()
	names := map[string]Unit{}
	for _, u := range us {
		names[u.Name] = u
	}
	for _, want := range []string{"corral-metrics.socket", "corral-agent.socket", "sockets.target.wants/corral-agent.socket", "corral.service.wants/corral-metrics.socket"} {
		if _, ok := names[want]; !ok {
			t.Errorf("no %s in %v", want, us)
		}
	}
	a := names["corral-agent.socket"].Data
	for _, want := range []string{"ListenStream=9811\n", "FileDescriptorName=agent\n", "Service=corral.service\n"} {
		if !strings.Contains(a, want) {
			t.Errorf("corral-agent.socket lacks %q:\n%s", want, a)
		}
	}
	if m := names["corral-metrics.socket"].Data; !strings.Contains(m, "ListenStream=127.0.0.1:9810\n") {
		t.Errorf("corral-metrics.socket:\n%s", m)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("[metrics]\nlisten = \"127.0.0.1:9810\"\n[agent]\nlisten = \":9811\"\n"))
	f.Add([]byte("[agent]\nlisten = \"[::]:1\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		for _, u := range c.Units() {
			if strings.Count(u.Data, "ListenStream=") > 1 {
				t.Errorf("one address became several lines: %q", u.Data)
			}
		}
	})
}

func TestSameAddress(t *testing.T) {
	for _, tc := range []struct {
		conf, actual string
		want         bool
	}{
		{"127.0.0.1:9810", "127.0.0.1:9810", true},
		{":9811", "[::]:9811", true},
		{":9811", "0.0.0.0:9811", true},
		{"0.0.0.0:9811", "[::]:9811", true},
		{"[::1]:9810", "[::1]:9810", true},
		{"127.0.0.1:9810", "127.0.0.1:9811", false},
		{"127.0.0.1:9810", "[::]:9810", false},
		{":9811", "127.0.0.1:9811", false},
		{"bad", "127.0.0.1:1", false},
	} {
		if got := SameAddress(tc.conf, tc.actual); got != tc.want {
			t.Errorf("SameAddress(%q, %q) = %v", tc.conf, tc.actual, got)
		}
	}
}
