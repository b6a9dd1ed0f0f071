package restart

import (
	"fmt"
	"io"
	"time"
)

// TerminalProgress returns an Options.Progress that redraws one line on w
// (a terminal) at most ten times a second, and clears it when done.
func TerminalProgress(w io.Writer, what string) func(done, total uint64) {
	start := time.Now()
	var last time.Time
	return func(done, total uint64) {
		now := time.Now()
		if done < total && now.Sub(last) < 100*time.Millisecond {
			return
		}
		last = now
		rate := float64(done) / max(now.Sub(start).Seconds(), 1e-6) / (1 << 20)
		fmt.Fprintf(w, "\r%s: %d / %d MiB (%.0f MiB/s)\x1b[K", what, done>>20, total>>20, rate)
		if done >= total {
			fmt.Fprint(w, "\r\x1b[K")
		}
	}
}
