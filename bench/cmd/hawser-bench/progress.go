package main

import "fmt"

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
