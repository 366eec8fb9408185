package main

import (
	"io"
	"regexp"
	"sync"
	"time"
)

// stepLine is an install progress line: "[partition] done in 21.6s",
// "[unmount] failed after 0.4s", "[copy-closure] skipped: …".
var stepLine = regexp.MustCompile(`^\[[a-z0-9-]+\] (done in|failed after|skipped:) `)

// stepReporter passes the install's progress lines through to w and, in
// order, to send (an "installing" status report to nixlos.server, which
// mkiso deploy and mkiso serve print). One goroutine sends, so a slow or
// unreachable server never holds up the install; lines that find the
// queue full are dropped. Close waits, bounded, for the queue to drain,
// so the final complete/failed report comes after the steps.
type stepReporter struct {
	w    io.Writer
	mu   sync.Mutex
	buf  []byte
	ch   chan string
	done chan struct{}
	once sync.Once
	shut bool // Close was called: lines only go to w
}

func newStepReporter(w io.Writer, send func(msg string)) *stepReporter {
	s := &stepReporter{w: w, ch: make(chan string, 64), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for m := range s.ch {
			send(m)
		}
	}()
	return s
}

func (s *stepReporter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := -1
		for j, c := range s.buf {
			if c == '\n' {
				i = j
				break
			}
		}
		if i < 0 {
			break
		}
		line := string(s.buf[:i])
		s.buf = s.buf[i+1:]
		if !s.shut && stepLine.MatchString(line) {
			select {
			case s.ch <- line:
			default:
			}
		}
	}
	if len(s.buf) > 4096 {
		s.buf = s.buf[:0]
	}
	return n, err
}

// Close stops taking lines and waits up to 20 s for the queue to drain.
func (s *stepReporter) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.shut = true
		close(s.ch)
		s.mu.Unlock()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
		}
	})
}
