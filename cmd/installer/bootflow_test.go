package main

import (
	"bytes"
	"reflect"
	"testing"
)

func TestConsoleNames(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    []string
	}{
		{"console=ttyS0,115200n8 console=tty0 quiet", []string{"ttyS0", "tty0"}},
		{"console=ttyS0 console=ttyS0,9600", []string{"ttyS0"}},
		{"quiet nixlos.host=x", nil},
		{"console= console=../etc/passwd console=hvc0", []string{"hvc0"}},
	} {
		if got := consoleNames(tc.cmdline); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("consoleNames(%q) = %v, want %v", tc.cmdline, got, tc.want)
		}
	}
}

func TestCmdlineValue(t *testing.T) {
	for _, tc := range []struct {
		cmdline, key, want string
		ok                 bool
	}{
		{"nixlos.after=poweroff", "nixlos.after", "poweroff", true},
		{"nixlos.after=reboot nixlos.after=shell", "nixlos.after", "shell", true},
		{"nixlos.afterx=1", "nixlos.after", "", false},
		{"", "nixlos.after", "", false},
	} {
		got, ok := cmdlineValue(tc.cmdline, tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cmdlineValue(%q) = %q,%v want %q,%v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOpenConsolesFallback(t *testing.T) {
	var buf bytes.Buffer
	w, done := openConsoles([]string{"no-such-console-xyz"}, &buf)
	defer done()
	w.Write([]byte("ready\n"))
	if buf.String() != "ready\n" {
		t.Errorf("fallback got %q", buf.String())
	}
}
