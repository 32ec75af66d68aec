package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/corral-pool/corral/test/prom"
)

// series is one series of a range query's matrix.
type series = prom.Series

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
