package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"
)

// headlineP99 is the end-to-end p99 a sweep must keep to count for the
// headline.
const headlineP99 = 100 * time.Millisecond

// report is a run's results, printed as a table or as JSON.
type report struct {
	Date          string          `json:"date"`
	CPUs          int             `json:"cpus"`
	LoadAverage   string          `json:"load_average"` // of the machine as the run started
	Conversations int             `json:"conversations"`
	Subscribers   int             `json:"subscribers_per_conversation"`
	MessageBytes  int             `json:"message_bytes"`
	Duration      string          `json:"sweep_duration"`
	Warmup        string          `json:"warmup"`
	Drain         string          `json:"drain"`
	DB            string          `json:"db,omitempty"`
	Targets       []*targetReport `json:"targets"`
}

// targetReport is one target's results.
type targetReport struct {
	Target   string `json:"target"`
	Replicas int    `json:"replicas"`
	// IdleStreams streams were opened to measure the server's resident
	// memory per idle stream (each stream on its own connection).
	IdleStreams           int            `json:"idle_streams,omitempty"`
	IdleRSSPerStreamBytes *float64       `json:"idle_rss_per_stream_bytes,omitempty"`
	Sweeps                []*sweepReport `json:"sweeps"`
	// Best is the highest offered rate whose sweep kept p99 (from the
	// scheduled send time) within 100 ms and lost nothing, with its
	// deliveries per second; 0 if none did.
	BestRate             float64 `json:"best_rate_p99_within_100ms"`
	BestDeliveriesPerSec float64 `json:"best_deliveries_per_s"`
}

// sweepReport is one sweep's results.
type sweepReport struct {
	OfferedPerSec float64 `json:"offered_per_s"`
	// SentPerSec counts acknowledged sends over the sweep.
	SentPerSec float64 `json:"sent_per_s"`
	// DeliveriesPerSec counts messages received by subscribers during the
	// sweep's window, over the window.
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	Sends            int     `json:"sends"`
	SendErrors       int     `json:"send_errors"`
	LastSendError    string  `json:"last_send_error,omitempty"`
	// Expected is acknowledged sends times their conversation's
	// subscribers; Delivered counts first deliveries of the sweep's
	// messages by the end of the drain (unacknowledged ones included).
	Expected        int `json:"expected"`
	Delivered       int `json:"delivered"`
	Lost            int `json:"lost"`
	Duplicates      int `json:"duplicates"`
	OrderViolations int `json:"order_violations"`
	// Resumes counts streams that ended and were subscribed again from
	// their last seq; LastStreamEnd tells why one ended.
	Resumes       int    `json:"resumes"`
	LastStreamEnd string `json:"last_stream_end,omitempty"`
	// P50Ms, P99Ms and MaxMs are end-to-end latencies, from the start of
	// the send to the subscriber.
	P50Ms float64 `json:"latency_p50_ms"`
	P99Ms float64 `json:"latency_p99_ms"`
	MaxMs float64 `json:"latency_max_ms"`
	// ScheduledP99Ms is the p99 from the scheduled send time instead: a
	// sender sends one message at a time, so when the server answers
	// sends slower than the rate asks, its messages start late, and this
	// counts that wait (no coordinated omission). The headline uses it.
	ScheduledP99Ms float64 `json:"latency_p99_from_schedule_ms"`
	SendP50Ms      float64 `json:"send_p50_ms"`
	SendP99Ms      float64 `json:"send_p99_ms"`
	// ServerCPUPerDeliveryUs is the server's CPU time (all its processes)
	// over the window divided by the deliveries in it; absent when the
	// bench did not start the server.
	ServerCPUPerDeliveryUs *float64 `json:"server_cpu_us_per_delivery,omitempty"`
	// BenchCPUCores is the bench's own CPU over the window, in cores: the
	// load generator shares the machine with the server.
	BenchCPUCores float64 `json:"bench_cpu_cores"`
	DrainMs       float64 `json:"drain_ms"`
}

// newReport starts a report of cfg's run.
func newReport(cfg *config) *report {
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	db := cfg.db
	if i := strings.Index(db, "@"); i >= 0 && isPostgres(db) {
		db = db[:strings.Index(db, "://")+3] + "..." + db[i:] // no credentials in the report
	}
	return &report{
		Date: time.Now().Format(time.DateTime), CPUs: runtime.NumCPU(), LoadAverage: load,
		Conversations: cfg.conversations, Subscribers: cfg.subscribers, MessageBytes: cfg.size,
		Duration: cfg.duration.String(), Warmup: cfg.warmup.String(), Drain: cfg.drain.String(), DB: db,
	}
}

// newSweepReport turns what a sweep measured into its report.
func newSweepReport(out *sweepOutcome, withCPU bool) *sweepReport {
	secs := out.window.Seconds()
	sw := &sweepReport{
		OfferedPerSec: out.offered, SentPerSec: float64(out.acked) / secs, DeliveriesPerSec: float64(out.inWindow) / secs,
		Sends: out.acked, SendErrors: out.sendErrors, Expected: out.expected, Delivered: out.delivered,
		Lost: out.lost, Duplicates: out.duplicates, OrderViolations: out.order, Resumes: out.resumes,
		P50Ms: ms(percentile(out.latencies, 0.50)), P99Ms: ms(percentile(out.latencies, 0.99)), MaxMs: ms(percentile(out.latencies, 1)),
		ScheduledP99Ms: ms(percentile(out.lagged, 0.99)),
		SendP50Ms:      ms(percentile(out.ackLatencies, 0.50)), SendP99Ms: ms(percentile(out.ackLatencies, 0.99)),
		BenchCPUCores: out.benchCPU.Seconds() / secs, DrainMs: ms(out.drained),
	}
	if out.lastSendErr != nil {
		sw.LastSendError = out.lastSendErr.Error()
	}
	if out.lastEnd != nil {
		sw.LastStreamEnd = out.lastEnd.Error()
	}
	if withCPU && out.inWindow > 0 {
		perDelivery := float64(out.serverCPU.Microseconds()) / float64(out.inWindow)
		sw.ServerCPUPerDeliveryUs = &perDelivery
	}
	return sw
}

// percentile returns the q-th quantile (nearest rank) of sorted, 0 if empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// summary is the sweep in one line, for progress.
func (s *sweepReport) summary() string {
	return fmt.Sprintf("%g msg/s offered: %.0f sent/s, %.0f deliveries/s, p50 %.1f ms, p99 %.1f ms (%.1f ms from schedule), max %.1f ms, lost %d, dup %d, order %d, send errors %d",
		s.OfferedPerSec, s.SentPerSec, s.DeliveriesPerSec, s.P50Ms, s.P99Ms, s.ScheduledP99Ms, s.MaxMs, s.Lost, s.Duplicates, s.OrderViolations, s.SendErrors)
}

// pickBest sets the headline: the highest rate that kept p99, from the
// scheduled send time, within headlineP99 and lost nothing.
func (t *targetReport) pickBest() {
	for _, s := range t.Sweeps {
		if s.ScheduledP99Ms <= ms(headlineP99) && s.Lost == 0 && s.Sends > 0 && s.OfferedPerSec > t.BestRate {
			t.BestRate, t.BestDeliveriesPerSec = s.OfferedPerSec, s.DeliveriesPerSec
		}
	}
}

// writeJSON writes the report as indented JSON.
func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// writeTable writes the report as a markdown table, the targets side by
// side at each rate, then memory per idle stream and the headline.
func (r *report) writeTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "parley-bench, %s, %d CPUs, load average %s at the start\n", r.Date, r.CPUs, r.LoadAverage)
	fmt.Fprintf(&b, "%d conversations x %d subscribers (each on its own HTTP/2 connection), one sender each, %d-byte messages; %s sweeps after a %s warm-up, drain up to %s\n\n",
		r.Conversations, r.Subscribers, r.MessageBytes, r.Duration, r.Warmup, r.Drain)
	rows := [][]string{{"offered msg/s", "target", "sent/s", "deliveries/s", "p50 ms", "p99 ms", "max ms", "p99 from schedule ms", "send p99 ms",
		"lost", "dup", "order", "send errors", "resumes", "server CPU us/delivery", "bench CPU cores"}}
	for i := range r.maxSweeps() {
		for _, t := range r.Targets {
			if i >= len(t.Sweeps) {
				continue
			}
			s := t.Sweeps[i]
			cpu := "-"
			if s.ServerCPUPerDeliveryUs != nil {
				cpu = fmt.Sprintf("%.1f", *s.ServerCPUPerDeliveryUs)
			}
			rows = append(rows, []string{fmt.Sprintf("%g", s.OfferedPerSec), t.Target, fmt.Sprintf("%.0f", s.SentPerSec),
				fmt.Sprintf("%.0f", s.DeliveriesPerSec), fmt.Sprintf("%.1f", s.P50Ms), fmt.Sprintf("%.1f", s.P99Ms),
				fmt.Sprintf("%.1f", s.MaxMs), fmt.Sprintf("%.1f", s.ScheduledP99Ms), fmt.Sprintf("%.1f", s.SendP99Ms), fmt.Sprint(s.Lost), fmt.Sprint(s.Duplicates),
				fmt.Sprint(s.OrderViolations), fmt.Sprint(s.SendErrors), fmt.Sprint(s.Resumes), cpu, fmt.Sprintf("%.2f", s.BenchCPUCores)})
		}
	}
	writeMarkdown(&b, rows)
	b.WriteString("\n")
	for _, t := range r.Targets {
		if t.IdleRSSPerStreamBytes != nil {
			fmt.Fprintf(&b, "- %s: %.1f KiB of server RSS per idle stream (%d idle streams, each on its own connection)\n",
				t.Target, *t.IdleRSSPerStreamBytes/1024, t.IdleStreams)
		}
	}
	for _, t := range r.Targets {
		if t.BestRate > 0 {
			fmt.Fprintf(&b, "- %s: highest rate with p99 (from schedule) <= 100 ms and nothing lost: %g msg/s, %.0f deliveries/s\n", t.Target, t.BestRate, t.BestDeliveriesPerSec)
		} else {
			fmt.Fprintf(&b, "- %s: no sweep kept p99 (from schedule) <= 100 ms with nothing lost\n", t.Target)
		}
	}
	for _, t := range r.Targets {
		for _, s := range t.Sweeps {
			if s.LastSendError != "" {
				fmt.Fprintf(&b, "- %s at %g msg/s, last send error: %s\n", t.Target, s.OfferedPerSec, s.LastSendError)
			}
			if s.LastStreamEnd != "" {
				fmt.Fprintf(&b, "- %s at %g msg/s, a stream ended (and resumed): %s\n", t.Target, s.OfferedPerSec, s.LastStreamEnd)
			}
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// maxSweeps is the most sweeps any target ran.
func (r *report) maxSweeps() int {
	n := 0
	for _, t := range r.Targets {
		n = max(n, len(t.Sweeps))
	}
	return n
}

// writeMarkdown writes rows (the first is the header) as a markdown table
// with padded columns, numbers right-aligned.
func writeMarkdown(b *strings.Builder, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for r, row := range rows {
		b.WriteString("|")
		for i, cell := range row {
			if r > 0 && i != 1 {
				fmt.Fprintf(b, " %*s |", widths[i], cell)
			} else {
				fmt.Fprintf(b, " %-*s |", widths[i], cell)
			}
		}
		b.WriteString("\n")
		if r == 0 {
			b.WriteString("|")
			for i, width := range widths {
				if i == 1 {
					fmt.Fprintf(b, "%s|", strings.Repeat("-", width+2))
				} else {
					fmt.Fprintf(b, "%s:|", strings.Repeat("-", width+1))
				}
			}
			b.WriteString("\n")
		}
	}
}
