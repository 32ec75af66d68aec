package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// dashboard is what this program reads of a Grafana dashboard's JSON.
type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		X int `json:"x"`
		Y int `json:"y"`
		W int `json:"w"`
		H int `json:"h"`
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit   string `json:"unit"`
			Custom struct {
				DrawStyle   string  `json:"drawStyle"`
				FillOpacity float64 `json:"fillOpacity"`
				Stacking    struct {
					Mode string `json:"mode"`
				} `json:"stacking"`
			} `json:"custom"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // a collapsed row's
}

type target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
	Hide         bool   `json:"hide"`
}

// readDashboard reads a dashboard and keeps its panels that have queries,
// those of collapsed rows included, in the order of their places.
func readDashboard(path string) (*dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: give the dashboard's JSON with -dashboard", err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: not a Grafana dashboard's JSON: %w", path, err)
	}
	var flat []panel
	for _, p := range d.Panels {
		flat = append(flat, p)
		flat = append(flat, p.Panels...)
	}
	d.Panels = nil
	for _, p := range flat {
		if p.Type == "row" || len(p.Targets) == 0 {
			continue
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 {
			return nil, fmt.Errorf("%s: panel %q has no gridPos w and h", path, p.Title)
		}
		for _, t := range p.Targets {
			if _, err := expand(t.Expr, 2*time.Second, time.Minute); err != nil {
				return nil, fmt.Errorf("%s: panel %q, target %s: %w", path, p.Title, t.RefID, err)
			}
		}
		d.Panels = append(d.Panels, p)
	}
	if len(d.Panels) == 0 {
		return nil, fmt.Errorf("%s: no panel with a query", path)
	}
	sort.SliceStable(d.Panels, func(i, j int) bool {
		a, b := d.Panels[i].GridPos, d.Panels[j].GridPos
		return a.Y < b.Y || a.Y == b.Y && a.X < b.X
	})
	return &d, nil
}

// A variable in a Grafana query: $name, ${name}, ${name:format} or [[name]].
var variable = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// expand gives the dashboard's variables the values of "All" (.*, the
// dashboard's allValue) and Grafana's built-in intervals theirs for a
// range query with this step over this span, with a scrape every second.
func expand(expr string, step, span time.Duration) (string, error) {
	var bad []string
	out := variable.ReplaceAllStringFunc(expr, func(m string) string {
		s := variable.FindStringSubmatch(m)
		name := s[1] + s[2] + s[3]
		switch name {
		case "pool", "host":
			return ".*"
		case "__interval":
			return promDuration(step)
		case "__rate_interval":
			return promDuration(max(step+time.Second, 4*time.Second))
		case "__range":
			return promDuration(span)
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("variable %s has no value here: this program knows $pool, $host, $__interval, $__rate_interval and $__range", strings.Join(bad, ", "))
	}
	return out, nil
}

// promDuration is d in PromQL, whole seconds.
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds()))
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// legend is a series' name as Grafana makes it from legendFormat: each
// {{label}} becomes the label's value, "" if it has none; without a
// format, the series' labels.
func legend(format string, labels map[string]string) string {
	if format == "" || format == "__auto" {
		var keys []string
		for k := range labels {
			if k != "__name__" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
		}
		return labels["__name__"] + "{" + strings.Join(parts, ", ") + "}"
	}
	s := legendLabel.ReplaceAllStringFunc(format, func(m string) string {
		return labels[legendLabel.FindStringSubmatch(m)[1]]
	})
	return strings.Join(strings.Fields(s), " ")
}
