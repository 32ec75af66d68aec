package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExpand(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{`sum(x{pool=~"$pool", instance=~"$host"})`, `sum(x{pool=~".*", instance=~".*"})`, ""},
		{`rate(x{pool=~"${pool:regex}"}[$__rate_interval])`, `rate(x{pool=~".*"}[4s])`, ""},
		{`x{pool=~"[[pool]]"}[$__range]`, `x{pool=~".*"}[240s]`, ""},
		{`x{job="$job"}`, "", "$job has no value"},
	} {
		got, err := expand(tt.in, 2*time.Second, 4*time.Minute)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expand(%q): %q, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestLegend(t *testing.T) {
	labels := map[string]string{"__name__": "corral_x", "instance": "h:1", "pool": "shop", "index": "2"}
	for format, want := range map[string]string{
		"{{instance}} {{pool}}@{{index}}": "h:1 shop@2",
		"{{ pool }} {{phase}} limit":      "shop limit",
		"":                                `corral_x{index="2", instance="h:1", pool="shop"}`,
	} {
		if got := legend(format, labels); got != want {
			t.Errorf("legend(%q) = %q, want %q", format, got, want)
		}
	}
}

func TestDataRows(t *testing.T) {
	pts := [][2]float64{{0, 1}, {2, 1}, {10, 2}}
	want := [][]float64{{0, 1}, {2, 1}, nil, {10, 2}}
	if got := dataRows(pts, 2, nil); !reflect.DeepEqual(got, want) {
		t.Errorf("dataRows = %v, want %v", got, want)
	}
	stack := map[float64]float64{}
	dataRows([][2]float64{{0, 1}, {2, 2}}, 2, stack)
	if got := dataRows([][2]float64{{2, 1}}, 2, stack); !reflect.DeepEqual(got, [][]float64{{2, 2, 3}}) {
		t.Errorf("stacked dataRows = %v", got)
	}
	if got := isolated(pts, 2); !reflect.DeepEqual(got, [][]float64{{10, 2}}) {
		t.Errorf("isolated = %v", got)
	}
}

func TestMakeView(t *testing.T) {
	start := time.Unix(1000, 0)
	rec := &record{Start: start, End: start.Add(4 * time.Minute), Step: 2 * time.Second,
		Results: map[string][]series{
			`mem{pool=~".*"}`: {},
			`cpu{pool=~".*"}`: {{Labels: map[string]string{"pool": "a"}, Points: [][2]float64{{1000, 0.5}}},
				{Labels: map[string]string{"pool": "b"}, Points: [][2]float64{{1000, 0}}}},
		}, Errors: map[string]string{}}
	var p panel
	p.Targets = []target{{RefID: "A", Expr: `corral_instance_memory_bytes{pool=~"$pool"}`}}
	rec.Results[`corral_instance_memory_bytes{pool=~".*"}`] = nil
	if v := makeView(p, rec); !strings.Contains(v.message, "cgroup") {
		t.Errorf("memory without data: %q", v.message)
	}
	p.Targets = []target{{RefID: "A", Expr: `cpu{pool=~"$pool"}`, LegendFormat: "{{pool}}"}, {RefID: "B", Expr: `mem{pool=~"$pool"}`, LegendFormat: "{{pool}} limit"}}
	p.FieldConfig.Defaults.Unit = "percentunit"
	v := makeView(p, rec)
	if len(v.lines) != 1 || v.lines[0].name != "a" || v.lines[0].pts[0] != [2]float64{0, 50} || v.format != "%g%%" {
		t.Errorf("lines %v, format %q", v.lines, v.format)
	}
	if want := []string{"no data: {{pool}} limit", "+1 series at 0 throughout, not drawn"}; !reflect.DeepEqual(v.notes, want) {
		t.Errorf("notes %q, want %q", v.notes, want)
	}
	p.Targets = []target{{RefID: "A", Expr: `changed`}}
	if v := makeView(p, rec); !strings.Contains(v.message, "without -replay") {
		t.Errorf("a query not in the record: %q", v.message)
	}
}

func TestUnit(t *testing.T) {
	ls := []line{{pts: [][2]float64{{0, 3 << 20}}}}
	if f, format := unit("bytes", ls); f != 1.0/(1<<20) || format != "%g MiB" {
		t.Errorf("bytes: %g, %q", f, format)
	}
	if niceTop(4) != 5 || niceTop(1) != 1.2 || niceTop(0) != 1 {
		t.Errorf("niceTop: %g %g %g", niceTop(4), niceTop(1), niceTop(0))
	}
	if got := xtics(60); got != `"0:00" 0, "0:15" 15, "0:30" 30, "0:45" 45, "1:00" 60` {
		t.Errorf("xtics(60) = %s", got)
	}
}

// The dashboard in the docs is one this program reads.
func TestReadDashboard(t *testing.T) {
	d, err := readDashboard("../../../docs/grafana/corral.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Panels) == 0 {
		t.Fatal("no panels")
	}
}
