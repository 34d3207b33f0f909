package main

import (
	"math"
	"slices"
)

// Spread is a median with the smallest and largest value it was taken from.
// N is 0 when nothing was measured; the other fields are then meaningless.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Valid reports whether the spread holds at least one value.
func (s Spread) Valid() bool { return s.N > 0 }

// spreadOf returns the median, min and max of vs, ignoring NaNs.
func spreadOf(vs []float64) Spread {
	var clean []float64
	for _, v := range vs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			clean = append(clean, v)
		}
	}
	if len(clean) == 0 {
		return Spread{}
	}
	slices.Sort(clean)
	return Spread{Median: median(clean), Min: clean[0], Max: clean[len(clean)-1], N: len(clean)}
}

// median of sorted values: the middle one, or the mean of the middle two.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted values by
// the nearest-rank method: the smallest value such that at least p percent
// of the values are less or equal. It is an observed value, never an
// interpolation, which is what "p99 latency" usually means for a log of
// transactions.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = max(rank, 1)
	rank = min(rank, n)
	return sorted[rank-1]
}
