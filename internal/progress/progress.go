// Package progress reports a long job as a sequence of named steps, each with
// the time it took, in the manner of gokrazy's packer: a line per step is
// always printed, a live elapsed-time counter only when the output is a
// terminal (so logs and CI output stay clean).
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Steps prints one line per named step to W.
type Steps struct {
	W     io.Writer
	Live  bool             // redraw an elapsed counter while a step runs
	Now   func() time.Time // clock; time.Now when nil (tests set it)
	total time.Duration
}

// New returns Steps writing to w, live only when w is a terminal.
func New(w io.Writer) *Steps {
	f, ok := w.(*os.File)
	return &Steps{W: w, Live: ok && term.IsTerminal(int(f.Fd()))}
}

func (s *Steps) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Run runs fn as the step called name and prints "[name] done in 1.2s" or
// "[name] failed after 1.2s". The error is returned wrapped with the step name.
func (s *Steps) Run(name string, fn func() error) error {
	start := s.now()
	stop := s.ticker(name, start)
	err := fn()
	stop()
	d := s.now().Sub(start)
	s.total += d
	if err != nil {
		fmt.Fprintf(s.W, "[%s] failed after %s\n", name, round(d))
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(s.W, "[%s] done in %s\n", name, round(d))
	return nil
}

// Total is the summed duration of the steps run so far.
func (s *Steps) Total() time.Duration { return s.total }

func (s *Steps) ticker(name string, start time.Time) (stop func()) {
	if !s.Live {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(s.W, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprintf(s.W, "\r\033[K[%s] %s", name, round(time.Since(start)))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
