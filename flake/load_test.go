package flake

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

func TestLoadManifest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"version":1,"flake":{"dir":"flake"},"hosts":{}}`)
	abs := write("abs.json", `{"version":1,"flake":{"dir":"/etc/nixos"},"hosts":{}}`)
	for _, tc := range []struct {
		name, path, wantDir, wantErr string
	}{
		{"relative dir resolved", good, filepath.Join(dir, "flake"), ""},
		{"absolute dir kept", abs, "/etc/nixos", ""},
		{"missing file", filepath.Join(dir, "none.json"), "", "none.json: cannot read manifest"},
		{"not json", write("bad.json", "{"), "", "bad.json: not a nixlos manifest"},
		{"wrong version", write("v2.json", `{"version":2}`), "", "unsupported version 2"},
	} {
		m, err := LoadManifest(tc.path)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errs.Code(err) != errs.CodeInput || !strings.Contains(err.Error(), "fix:") {
				t.Errorf("%s: err = %v (exit %d), want %q, exit 2 and a fix", tc.name, err, errs.Code(err), tc.wantErr)
			}
			continue
		}
		if err != nil || m.Flake.Dir != tc.wantDir {
			t.Errorf("%s: dir %q err %v, want %q", tc.name, m.Flake.Dir, err, tc.wantDir)
		}
	}
}
