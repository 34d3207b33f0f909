package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// BarChart is a grouped bar chart with optional error whiskers (the spread
// of a median) and horizontal reference lines, rendered as a standalone
// SVG with no dependency.
type BarChart struct {
	Title  string
	YLabel string
	Groups []string // along the x axis
	Series []Series // one bar per group each
	Refs   []RefLine
	// Format renders a value for the labels above bars; default "%.2f".
	Format string
}

// Series is one colour of bars.
type Series struct {
	Name   string
	Color  string // default: from the palette
	Values []Bar  // one per group
}

// Bar is one bar. A missing bar shows Note ("failed", "n/a") instead.
type Bar struct {
	Value, Min, Max float64
	Missing         bool
	Note            string
}

// barOf makes a bar from a spread, or a missing bar with note.
func barOf(s Spread, note string) Bar {
	if !s.Valid() {
		return Bar{Missing: true, Note: note}
	}
	return Bar{Value: s.Median, Min: s.Min, Max: s.Max}
}

// RefLine is a horizontal dashed line, such as "direct = 1.0" or a goal.
type RefLine struct {
	Value float64
	Label string
}

// halo draws a white outline under text so that labels stay readable over
// bars and lines.
const halo = `stroke="#ffffff" stroke-width="3" paint-order="stroke"`

// palette is Tableau 10, readable by most colour-blind readers.
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"}

// targetColors keep a target's colour the same across charts.
var targetColors = map[string]string{
	targetDirect:            "#8c8c8c",
	targetPgBouncer:         "#4e79a7",
	targetPauseproxy:        "#f28e2b",
	targetPgBouncerScripted: "#4e79a7",
	targetPauseproxyFollow:  "#f28e2b",
}

// Chart geometry, in SVG user units (pixels).
const (
	chartW       = 760
	chartH       = 400
	marginLeft   = 72
	marginRight  = 24
	marginTop    = 64
	marginBottom = 56
)

// niceStep rounds v down to 1, 2, 2.5 or 5 times a power of ten, so the
// axis ticks fall on round numbers.
func niceStep(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	step := p
	for _, m := range []float64{2, 2.5, 5} {
		if m*p <= v*(1+1e-9) {
			step = m * p
		}
	}
	return step
}

// axis returns the top of the y axis and its number of ticks (5 to 10
// round steps) covering top with room for the labels above the bars.
func axis(top float64) (yMax float64, ticks int) {
	if top <= 0 {
		return 1, 1
	}
	const want = 5
	step := niceStep(top * 1.12 / want)
	ticks = max(1, int(math.Ceil(top*1.12/step-1e-9)))
	return step * float64(ticks), ticks
}

// SVG renders the chart.
func (c BarChart) SVG() string {
	format := c.Format
	if format == "" {
		format = "%.2f"
	}
	top := 0.0
	for _, s := range c.Series {
		for _, b := range s.Values {
			if !b.Missing {
				top = max(top, b.Value, b.Max)
			}
		}
	}
	for _, r := range c.Refs {
		top = max(top, r.Value)
	}
	yMax, ticks := axis(top)
	plotW := float64(chartW - marginLeft - marginRight)
	plotH := float64(chartH - marginTop - marginBottom)
	y := func(v float64) float64 { return marginTop + plotH - v/yMax*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginLeft, esc(c.Title))

	// Axis, grid and tick labels.
	for i := 0; i <= ticks; i++ {
		v := yMax * float64(i) / float64(ticks)
		yy := y(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", marginLeft, yy, chartW-marginRight, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", marginLeft-6, yy+4, esc(tickLabel(v)))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%.1f" stroke="#333"/>`+"\n", marginLeft, marginTop, marginLeft, marginTop+plotH)
	fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333"/>`+"\n", marginLeft, marginTop+plotH, chartW-marginRight, marginTop+plotH)
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle" fill="#444">%s</text>`+"\n", marginTop+plotH/2, esc(c.YLabel))

	// Bars.
	groupW := plotW / float64(max(len(c.Groups), 1))
	barW := groupW * 0.8 / float64(max(len(c.Series), 1))
	for gi, g := range c.Groups {
		gx := marginLeft + groupW*float64(gi)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#222">%s</text>`+"\n", gx+groupW/2, marginTop+plotH+18, esc(g))
		for si, s := range c.Series {
			if gi >= len(s.Values) {
				continue
			}
			bar := s.Values[gi]
			x := gx + groupW*0.1 + barW*float64(si)
			cx := x + barW/2
			if bar.Missing {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="#c0392b">%s</text>`+"\n",
					cx, marginTop+plotH-8, esc(bar.Note))
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="2" fill="%s"/>`+"\n", x+1, marginTop+plotH-2, barW-2, seriesColor(s, si))
				continue
			}
			top := y(bar.Value)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`+"\n",
				x+1, top, barW-2, marginTop+plotH-top, seriesColor(s, si), esc(s.Name+" / "+g), esc(fmt.Sprintf(format, bar.Value)))
			labelY := top - 5
			if bar.Max > bar.Min {
				lo, hi := y(bar.Min), y(bar.Max)
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222"/>`+"\n", cx, lo, cx, hi)
				for _, yy := range []float64{lo, hi} {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222"/>`+"\n", cx-4, yy, cx+4, yy)
				}
				labelY = min(labelY, hi-7)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="#222" %s>%s</text>`+"\n", cx, labelY, halo, esc(fmt.Sprintf(format, bar.Value)))
		}
	}

	// Reference lines on top of the bars.
	for _, r := range c.Refs {
		yy := y(r.Value)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#c0392b" stroke-dasharray="6 4" stroke-width="1.5"/>`+"\n", marginLeft, yy, chartW-marginRight, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" font-size="11" fill="#c0392b" %s>%s</text>`+"\n", chartW-marginRight-4, yy-4, halo, esc(r.Label))
	}

	// Legend, one row under the title.
	lx := float64(marginLeft)
	for si, s := range c.Series {
		fmt.Fprintf(&b, `<rect x="%.1f" y="36" width="12" height="12" fill="%s"/>`+"\n", lx, seriesColor(s, si))
		fmt.Fprintf(&b, `<text x="%.1f" y="46">%s</text>`+"\n", lx+16, esc(s.Name))
		lx += 16 + 7*float64(len(s.Name)) + 24
	}
	if hasWhiskers(c.Series) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-size="11" fill="#666">bars: median; whiskers: min–max</text>`+"\n", chartW-marginRight, chartH-12)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func seriesColor(s Series, i int) string {
	if s.Color != "" {
		return s.Color
	}
	return palette[i%len(palette)]
}

func hasWhiskers(ss []Series) bool {
	for _, s := range ss {
		for _, b := range s.Values {
			if !b.Missing && b.Max > b.Min {
				return true
			}
		}
	}
	return false
}

// tickLabel formats an axis value without trailing zeros: 0, 0.25, 2.5,
// 20000.
func tickLabel(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// esc escapes text for SVG (XML) content and attributes.
func esc(s string) string { return html.EscapeString(s) }
