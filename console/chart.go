package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// usagePoint is one bucket of one outcome in GET /usage's series
// (?key=…&resolution=minute&group_by=outcome). Its time is read from
// "start" (or "at", "time", "bucket"), its count from "count" (or
// "requests").
type usagePoint struct {
	Start    time.Time `json:"start"`
	At       time.Time `json:"at"`
	Time     time.Time `json:"time"`
	Bucket   time.Time `json:"bucket"`
	Outcome  string    `json:"outcome"`
	Count    int64     `json:"count"`
	Requests int64     `json:"requests"`
}

func (p usagePoint) when() time.Time {
	for _, t := range []time.Time{p.Start, p.At, p.Time, p.Bucket} {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// chart is a usage chart ready for the key page.
type chart struct {
	SVG template.HTML
	// Legend lists the outcomes with their colour and total.
	Legend []legendEntry
	From   time.Time
	To     time.Time
	Total  int64
}

type legendEntry struct {
	Outcome, Class string
	Total          int64
}

// usageChart asks the API for the key's usage per minute by outcome, and
// draws it; nil (no chart) when the API has no usage route or no data.
func (c *Console) usageChart(r *http.Request, cl *caller, keyID string) *chart {
	q := url.Values{"key": {keyID}, "resolution": {"minute"}, "group_by": {"outcome"}}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, apiBase+"/usage?"+q.Encode(), nil)
	if err != nil {
		return nil
	}
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Transport: inProcess{api: c.cfg.API(), p: cl.p}}).Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var body struct {
		Items []usagePoint `json:"items"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&body); err != nil {
		return nil
	}
	return drawChart(body.Items)
}

// outcomeClass maps an outcome to its colour class; unknown outcomes
// share one.
func outcomeClass(outcome string) string {
	switch {
	case outcome == "allowed" || outcome == "ok" || strings.HasPrefix(outcome, "2"):
		return "o-ok"
	case strings.Contains(outcome, "rate") || strings.Contains(outcome, "usage") || outcome == "429":
		return "o-limit"
	case strings.Contains(outcome, "scope") || strings.Contains(outcome, "forbidden") || strings.Contains(outcome, "ip"):
		return "o-denied"
	case strings.Contains(outcome, "token") || strings.Contains(outcome, "unauth") || strings.Contains(outcome, "expired"):
		return "o-invalid"
	}
	return "o-other"
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 600, 160
	chartBars      = 60
)

// drawChart stacks each bucket's outcomes in a bar, the last chartBars
// buckets; nil when points is empty.
func drawChart(points []usagePoint) *chart {
	if len(points) == 0 {
		return nil
	}
	byTime := map[time.Time]map[string]int64{}
	totals := map[string]int64{}
	for _, p := range points {
		t := p.when().UTC()
		n := p.Count + p.Requests
		if t.IsZero() || n <= 0 {
			continue
		}
		if byTime[t] == nil {
			byTime[t] = map[string]int64{}
		}
		byTime[t][p.Outcome] += n
		totals[p.Outcome] += n
	}
	if len(byTime) == 0 {
		return nil
	}
	times := make([]time.Time, 0, len(byTime))
	for t := range byTime {
		times = append(times, t)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	if len(times) > chartBars {
		times = times[len(times)-chartBars:]
	}
	outcomes := make([]string, 0, len(totals))
	for o := range totals {
		outcomes = append(outcomes, o)
	}
	slices.Sort(outcomes)
	var peak int64
	for _, t := range times {
		var sum int64
		for _, n := range byTime[t] {
			sum += n
		}
		peak = max(peak, sum)
	}
	ch := &chart{From: times[0], To: times[len(times)-1]}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" class="chart" role="img" aria-label="Requests per minute by outcome, %s to %s">`,
		chartW, chartH+20, ch.From.Format("15:04"), ch.To.Format("15:04 UTC"))
	bw := float64(chartW) / float64(chartBars)
	for i, t := range times {
		x := float64(i) * bw
		y := float64(chartH)
		for _, o := range outcomes {
			n := byTime[t][o]
			if n == 0 {
				continue
			}
			h := float64(n) / float64(peak) * float64(chartH-4)
			y -= h
			fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s %s: %d</title></rect>`,
				outcomeClass(o), x+1, y, bw-2, h, t.Format("15:04"), template.HTMLEscapeString(o), n)
		}
	}
	fmt.Fprintf(&b, `<line class="axis" x1="0" y1="%d" x2="%d" y2="%d"/>`, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<text class="axis-label" x="0" y="%d">%s</text>`, chartH+16, ch.From.Format("15:04"))
	fmt.Fprintf(&b, `<text class="axis-label" x="%d" y="%d" text-anchor="end">%s UTC · peak %d/min</text>`, chartW, chartH+16, ch.To.Format("15:04"), peak)
	b.WriteString(`</svg>`)
	ch.SVG = template.HTML(b.String()) // built from numbers, times and escaped outcomes only
	for _, o := range outcomes {
		ch.Legend = append(ch.Legend, legendEntry{Outcome: o, Class: outcomeClass(o), Total: totals[o]})
		ch.Total += totals[o]
	}
	return ch
}
