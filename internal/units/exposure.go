package units

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
)

// ErrNoAnalyzer is returned by Exposure when systemd-analyze is not
// installed.
var ErrNoAnalyzer = errors.New("units: systemd-analyze not found (install systemd)")

var exposureRE = regexp.MustCompile(`Overall exposure level for [^:]+: ([0-9]+\.[0-9])`)

// Exposure returns systemd's exposure score of one instance of the pool
// (`systemd-analyze security --offline=true`): 0.0 is the tightest sandbox,
// 10.0 none at all. It renders the pool's worker unit into a temporary
// directory and removes it afterwards.
func Exposure(ctx context.Context, p *Pool) (float64, error) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		return 0, ErrNoAnalyzer
	}
	dir, err := os.MkdirTemp("", "corral-exposure-")
	if err != nil {
		return 0, fmt.Errorf("units: exposure of %s: %w", p.Name, err)
	}
	defer os.RemoveAll(dir)
	unit := filepath.Join(dir, p.Name+"@1.service")
	if err := os.WriteFile(unit, renderService(p), 0o644); err != nil {
		return 0, fmt.Errorf("units: exposure of %s: %w", p.Name, err)
	}
	out, err := exec.CommandContext(ctx, bin, "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		if err == nil {
			err = errors.New("no score in its output")
		}
		return 0, fmt.Errorf("units: systemd-analyze security %s: %w: %s", p.Name, err, firstLine(out))
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// LooseningCosts returns the exposure of the pool's tightest variant
// (Tightest) and, for each of its loosenings, the exposure with that
// loosening alone.
func LooseningCosts(ctx context.Context, p *Pool) (base float64, ls []Loosening, each []float64, err error) {
	t := Tightest(p)
	if base, err = Exposure(ctx, t); err != nil {
		return 0, nil, nil, err
	}
	ls = Loosenings(p)
	each = make([]float64, len(ls))
	for i, l := range ls {
		v := *t
		l.apply(&v)
		if each[i], err = Exposure(ctx, &v); err != nil {
			return 0, nil, nil, err
		}
	}
	return base, ls, each, nil
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}
