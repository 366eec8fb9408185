package flash

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nixlos/nixlos/hw"
)

// Meter shows a job's progress in bytes: on a terminal a bar redrawn in
// place (bytes, percent, rate, ETA), otherwise a plain line every Every.
type Meter struct {
	W     io.Writer
	Live  bool             // a terminal: redraw one line
	What  string           // "writing", "verifying"
	Total uint64           // bytes
	Every time.Duration    // plain lines' period (default 5s); a live bar redraws at most every 200ms
	Now   func() time.Time // clock (tests); time.Now when nil

	start, last time.Time
	started     bool
}

func (m *Meter) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Update reports done bytes.
func (m *Meter) Update(done uint64) {
	now := m.now()
	if !m.started {
		m.start, m.last, m.started = now, now, true
	}
	every := m.Every
	if m.Live {
		every = 200 * time.Millisecond
	} else if every == 0 {
		every = 5 * time.Second
	}
	if now.Sub(m.last) < every || done >= m.Total {
		return
	}
	m.last = now
	if m.Live {
		fmt.Fprintf(m.W, "\r\033[K%s", m.line(done, now, true))
	} else {
		fmt.Fprintln(m.W, m.line(done, now, false))
	}
}

// Done ends the meter with a summary line.
func (m *Meter) Done(done uint64) {
	now := m.now()
	if !m.started {
		m.start = now
	}
	if m.Live {
		fmt.Fprint(m.W, "\r\033[K")
	}
	d := now.Sub(m.start)
	fmt.Fprintf(m.W, "%s: %s in %s (%s)\n", m.What, hw.HumanBytes(done), roundDur(d), rate(done, d))
}

func (m *Meter) line(done uint64, now time.Time, bar bool) string {
	d := now.Sub(m.start)
	pct := 0.0
	if m.Total > 0 {
		pct = 100 * float64(done) / float64(m.Total)
	}
	eta := "?"
	if done > 0 && d > 0 && m.Total >= done {
		left := time.Duration(float64(d) * float64(m.Total-done) / float64(done))
		eta = clock(left)
	}
	if bar {
		const width = 30
		fill := int(pct / 100 * width)
		if fill > width {
			fill = width
		}
		return fmt.Sprintf("%s [%s%s] %3.0f%% %s / %s  %s  ETA %s", m.What, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
			pct, hw.HumanBytes(done), hw.HumanBytes(m.Total), rate(done, d), eta)
	}
	return fmt.Sprintf("%s: %.0f%%, %s of %s, %s, ETA %s", m.What, pct, hw.HumanBytes(done), hw.HumanBytes(m.Total), rate(done, d), eta)
}

func rate(n uint64, d time.Duration) string {
	if d <= 0 {
		return "- /s"
	}
	return hw.HumanBytes(uint64(float64(n)/d.Seconds())) + "/s"
}

// clock renders a duration as m:ss (h:mm:ss from an hour).
func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func roundDur(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
