package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

// TestFlashUsage: help (exit 0), bad arguments and inputs (exit 2); none of
// these touch a disk. /dev/null is a character device, never written: the
// image check and device rules refuse before any open for writing.
func TestFlashUsage(t *testing.T) {
	img := filepath.Join(t.TempDir(), "nixlos.iso")
	if err := os.WriteFile(img, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stdout+error
	}{
		{"help", []string{"--help"}, 0, "Usage: mkiso flash IMAGE [DEVICE]"},
		{"too many args", []string{img, "/dev/sdx", "extra"}, 2, "at most one DEVICE"},
		{"unknown flag", []string{"--force"}, 2, "flag provided but not defined"},
		{"missing image", []string{"/nonexistent.iso", "/dev/sdx", "--yes"}, 2, "/nonexistent.iso"},
		{"directory as image", []string{t.TempDir(), "/dev/sdx", "--yes"}, 2, "not a file or block device"},
		{"empty image", []string{emptyFile(t), "/dev/sdx", "--yes"}, 2, "it is empty"},
		{"missing device", []string{img, "/dev/nonexistent-disk", "--yes"}, 2, "/dev/nonexistent-disk: no such device"},
		{"character device", []string{img, "/dev/null", "--yes"}, 2, "/dev/null"},
		{"device without image", []string{"--yes", "--dry-run", "--json", "", "/dev/sdx"}, 2, "no IMAGE given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(append([]string{"flash"}, tc.args...), &out, &errOut)
			if got := errs.Code(err); got != tc.code {
				t.Fatalf("exit %d (%v), want %d", got, err, tc.code)
			}
			text := out.String()
			if err != nil {
				text += err.Error()
			}
			if !strings.Contains(text, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, text)
			}
		})
	}
}

func emptyFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "empty.iso")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
