package main

import (
	"slices"
	"sort"
	"time"
)

// median of xs: the middle value, or the mean of the two middle ones; 0 for
// none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// medianDur is median for durations.
func medianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// jain is Jain's fairness index of the requests each of n instances served:
// (Σx)² / (n·Σx²), 1 when all served the same, 1/n when one served all.
// counts may name fewer than n instances (the others served nothing) or more
// (a replacement after a crash): n is raised to len(counts). 0 without
// requests.
func jain(counts []int, n int) float64 {
	n = max(n, len(counts))
	var sum, sq float64
	for _, c := range counts {
		sum += float64(c)
		sq += float64(c) * float64(c)
	}
	if n == 0 || sq == 0 {
		return 0
	}
	return sum * sum / (float64(n) * sq)
}

// shares returns each instance's share of the requests, largest first, as
// fractions, padded with zeros to n instances.
func shares(counts []int, n int) []float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	s := make([]float64, max(n, len(counts)))
	for i, c := range counts {
		if total > 0 {
			s[i] = float64(c) / float64(total)
		}
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	return s
}

// medianShares is the element-wise median of share vectors (each sorted
// largest first), over rounds.
func medianShares(rounds [][]float64) []float64 {
	n := 0
	for _, r := range rounds {
		n = max(n, len(r))
	}
	out := make([]float64, n)
	for i := range out {
		var xs []float64
		for _, r := range rounds {
			if i < len(r) {
				xs = append(xs, r[i])
			} else {
				xs = append(xs, 0)
			}
		}
		out[i] = median(xs)
	}
	return out
}
