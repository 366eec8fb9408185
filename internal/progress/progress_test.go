package progress

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSteps(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Unix(0, 0)
	s := &Steps{W: &buf, Now: func() time.Time { return clock }}
	if err := s.Run("prepare", func() error { clock = clock.Add(1500 * time.Millisecond); return nil }); err != nil {
		t.Fatal(err)
	}
	err := s.Run("images", func() error { clock = clock.Add(250 * time.Millisecond); return errors.New("disk full") })
	if err == nil || err.Error() != "images: disk full" {
		t.Fatalf("err = %v", err)
	}
	want := "[prepare] done in 1.5s\n[images] failed after 250ms\n"
	if buf.String() != want {
		t.Errorf("output %q, want %q", buf.String(), want)
	}
	if s.Total() != 1750*time.Millisecond {
		t.Errorf("total %v", s.Total())
	}
	if strings.Contains(buf.String(), "\r") {
		t.Error("non-terminal output must not redraw")
	}
}

func TestNewNotTerminal(t *testing.T) {
	if New(&bytes.Buffer{}).Live {
		t.Error("a buffer is not a terminal")
	}
}
