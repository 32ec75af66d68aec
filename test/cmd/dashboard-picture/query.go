package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// series is one series of a range query's matrix.
type series struct {
	Labels map[string]string `json:"labels"`
	Points [][2]float64      `json:"points"` // [unix seconds, value]; no NaN or Inf
}

// event is a step of the scenario, as it happened.
type event struct {
	At   time.Duration `json:"at"` // since the record's Start
	What string        `json:"what"`
}

// record is a run: when, what happened, and what the dashboard's queries
// returned over it.
type record struct {
	Start   time.Time           `json:"start"`
	End     time.Time           `json:"end"`
	Step    time.Duration       `json:"step"`
	Events  []event             `json:"events"`
	About   string              `json:"about"`   // the setup, for the picture's header
	Results map[string][]series `json:"results"` // by expression as queried
	Errors  map[string]string   `json:"errors"`  // by expression: why it failed
}

func (r *record) save(path string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func loadRecord(path string) (*record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: give a file that -save wrote", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: not a file that -save wrote: %w", path, err)
	}
	if r.Step <= 0 || !r.End.After(r.Start) {
		return nil, fmt.Errorf("%s: no step or time range: not a file that -save wrote", path)
	}
	return &r, nil
}

// queryRange evaluates promql over [start, end] every step with
// Prometheus's /api/v1/query_range at base (http://HOST:PORT), and returns
// its matrix less the NaN and infinite values.
func queryRange(ctx context.Context, base, promql string, start, end time.Time, step time.Duration) ([]series, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q := url.Values{
		"query": {promql},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query_range?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus: query_range %q: %w", promql, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("prometheus: query_range %q: %w", promql, err)
	}
	return parseMatrix(promql, body)
}

// parseMatrix reads /api/v1/query_range's answer, which is JSON for errors
// (400, 422) too.
func parseMatrix(promql string, body []byte) ([]series, error) {
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("prometheus: query_range %q: %w: %.300s", promql, err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus: query_range %q: %s: %s", promql, r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("prometheus: query_range %q: a %s, not a matrix", promql, r.Data.ResultType)
	}
	out := []series{}
	for _, e := range r.Data.Result {
		s := series{Labels: e.Metric}
		for _, v := range e.Values {
			t, ok := v[0].(float64)
			str, ok2 := v[1].(string)
			if !ok || !ok2 {
				return nil, fmt.Errorf("prometheus: query_range %q: bad value %v", promql, v)
			}
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				return nil, fmt.Errorf("prometheus: query_range %q: %w", promql, err)
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				continue
			}
			s.Points = append(s.Points, [2]float64{t, f})
		}
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		out = append(out, s)
	}
	return out, nil
}
