package main

import (
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports a scenario's runs as they finish. On a terminal it is a
// bar that redraws itself in place; anywhere else (a file, a pipe, `make
// bench > log`) it writes one plain line per run, so that a log holds no
// carriage-return redraws:
//
//	unary hawser 1024B x1 gmp1 r2: 9.1k calls/s p50 104µs
type progress struct {
	w      io.Writer
	prefix string                   // the scenario
	bar    *progressbar.ProgressBar // nil off a terminal
}

func newProgress(w io.Writer, total int, scenario string) *progress {
	p := &progress{w: w, prefix: scenario}
	if isTerminal(w) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(scenario),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish())
	}
	return p
}

// done reports one run, described by desc.
func (p *progress) done(desc string) {
	if p.bar == nil {
		fmt.Fprintf(p.w, "%s %s\n", p.prefix, desc)
		return
	}
	p.bar.Describe(desc)
	_ = p.bar.Add(1)
}

// finish clears the bar, if there is one.
func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// summary is one run in a few words for the progress output:
// "9.1k calls/s p50 104µs".
func (r runResult) summary(scenario string) string {
	unit := "calls/s"
	if scenario == "stream" {
		unit = "items/s"
	}
	return fmt.Sprintf("%s %s p50 %.0fµs", metric(float64(r.Calls)/r.Seconds), unit, r.P50)
}

// metric writes a rate short: 912, 9.1k, 87k, 1.20M.
func metric(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.0fk", x/1e3)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}
