package main

import (
	"fmt"
	"slices"
)

// ScenarioSummary is one scenario's runs reduced to medians and spreads.
type ScenarioSummary struct {
	Scenario
	Targets []TargetSummary `json:"results"`
}

// Target returns the summary of target name, or nil.
func (s *ScenarioSummary) Target(name string) *TargetSummary {
	for i := range s.Targets {
		if s.Targets[i].Target == name {
			return &s.Targets[i]
		}
	}
	return nil
}

// TargetSummary is one target's runs in one scenario. Spreads are over the
// successful runs only.
type TargetSummary struct {
	Target string `json:"target"`
	Runs   int    `json:"runs"`
	OKRuns int    `json:"ok_runs"`
	// Status is "ok", "failed" (no run succeeded) or "partial".
	Status string `json:"status"`
	// Error is the first failed run's error.
	Error string `json:"error,omitempty"`
	TPS   Spread `json:"tps"`
	// Ratios are this target's TPS over another target's, computed within
	// each round (runs seconds apart) and then reduced, keyed by the other
	// target.
	Ratios map[string]Spread `json:"ratios,omitempty"`
	// Latency percentiles (latency scenarios), and the same minus
	// direct's within each round: the latency the pooler adds.
	P50us      Spread `json:"p50_us,omitzero"`
	P99us      Spread `json:"p99_us,omitzero"`
	AddedP50us Spread `json:"added_p50_us,omitzero"`
	AddedP99us Spread `json:"added_p99_us,omitzero"`
	// CPUPer1000 is the pooler's CPU seconds per 1,000 transactions.
	CPUPer1000 Spread `json:"cpu_s_per_1000_tx,omitzero"`
	// Failed and Aborted add up pgbench's failed transactions and aborted
	// clients over all runs.
	Failed  int64 `json:"failed_transactions"`
	Aborted int   `json:"aborted_clients"`
}

// summarize reduces runs to one summary per scenario, in the order of scs.
func summarize(scs []Scenario, runs []Run) []ScenarioSummary {
	var out []ScenarioSummary
	for _, sc := range scs {
		s := ScenarioSummary{Scenario: sc}
		// byRound[target][round] is the successful run, if any.
		byRound := map[string]map[int]Run{}
		for _, r := range runs {
			if r.Scenario != sc.ID || !r.OK {
				continue
			}
			if byRound[r.Target] == nil {
				byRound[r.Target] = map[int]Run{}
			}
			byRound[r.Target][r.Round] = r
		}
		for _, name := range sc.Targets {
			s.Targets = append(s.Targets, summarizeTarget(sc, name, runs, byRound))
		}
		out = append(out, s)
	}
	return out
}

func summarizeTarget(sc Scenario, name string, runs []Run, byRound map[string]map[int]Run) TargetSummary {
	ts := TargetSummary{Target: name}
	var tps, p50, p99, cpu []float64
	for _, r := range runs {
		if r.Scenario != sc.ID || r.Target != name {
			continue
		}
		ts.Runs++
		ts.Failed += r.Failed
		ts.Aborted += r.AbortedClients
		if !r.OK {
			if ts.Error == "" {
				ts.Error = r.Error
			}
			continue
		}
		ts.OKRuns++
		tps = append(tps, r.TPS)
		if sc.Latency {
			p50 = append(p50, r.P50us)
			p99 = append(p99, r.P99us)
		}
		if r.CPUSeconds > 0 && r.Processed > 0 {
			cpu = append(cpu, r.CPUSeconds/float64(r.Processed)*1000)
		}
	}
	switch {
	case ts.Runs == 0:
		ts.Status = "not run"
	case ts.OKRuns == ts.Runs:
		ts.Status = "ok"
	case ts.OKRuns == 0:
		ts.Status = "failed"
	default:
		ts.Status = fmt.Sprintf("partial (%d of %d runs failed)", ts.Runs-ts.OKRuns, ts.Runs)
	}
	ts.TPS = spreadOf(tps)
	ts.P50us = spreadOf(p50)
	ts.P99us = spreadOf(p99)
	ts.CPUPer1000 = spreadOf(cpu)

	mine := byRound[name]
	for _, other := range sc.Targets {
		if other == name {
			continue
		}
		var ratios []float64
		for _, round := range sortedRounds(mine) {
			o, ok := byRound[other][round]
			if ok && o.TPS > 0 {
				ratios = append(ratios, mine[round].TPS/o.TPS)
			}
		}
		if sp := spreadOf(ratios); sp.Valid() {
			if ts.Ratios == nil {
				ts.Ratios = map[string]Spread{}
			}
			ts.Ratios[other] = sp
		}
	}
	if sc.Latency && name != targetDirect {
		var a50, a99 []float64
		for _, round := range sortedRounds(mine) {
			if d, ok := byRound[targetDirect][round]; ok {
				a50 = append(a50, mine[round].P50us-d.P50us)
				a99 = append(a99, mine[round].P99us-d.P99us)
			}
		}
		ts.AddedP50us = spreadOf(a50)
		ts.AddedP99us = spreadOf(a99)
	}
	return ts
}

func sortedRounds(m map[int]Run) []int {
	var rounds []int
	for r := range m {
		rounds = append(rounds, r)
	}
	slices.Sort(rounds)
	return rounds
}
