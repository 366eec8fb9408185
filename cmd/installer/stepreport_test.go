package main

import (
	"bytes"
	"reflect"
	"sync"
	"testing"
)

func TestStepReporter(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	var console bytes.Buffer
	s := newStepReporter(&console, func(m string) { mu.Lock(); sent = append(sent, m); mu.Unlock() })
	for _, w := range []string{"[verify-key] done in 24ms\n[luks", "-keys] done in 5ms\nnoise from a tool\n", "[copy-closure] skipped: no closure\n",
		"  [nested] done in 1s\n", "[unmount] failed after 401ms\n", "[partial] done in"} {
		s.Write([]byte(w))
	}
	s.Close()
	want := []string{"[verify-key] done in 24ms", "[luks-keys] done in 5ms", "[copy-closure] skipped: no closure", "[unmount] failed after 401ms"}
	if !reflect.DeepEqual(sent, want) {
		t.Fatalf("sent %q, want %q", sent, want)
	}
	if !bytes.Contains(console.Bytes(), []byte("noise from a tool")) {
		t.Fatalf("console lost a line: %q", console.String())
	}
	s.Write([]byte("[late] done in 1s\n")) // after Close: passed through, not sent
}
