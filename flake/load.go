package flake

import (
	"os"
	"path/filepath"

	"github.com/nixlos/nixlos/internal/errs"
)

// LoadManifest reads and decodes a manifest file (mkiso manifest's output,
// or /etc/nixlos/manifest.json in the installer image). A relative flake
// directory in it is taken relative to the file. A file that cannot be read
// or is not a manifest is an input error naming the file and the fix.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.BadInput(path, "give the manifest with --manifest FILE (mkiso manifest FLAKE writes one)", "cannot read manifest: %v", err)
	}
	m, err := Decode(data)
	if err != nil {
		return nil, errs.BadInput(path, "regenerate it with 'mkiso manifest FLAKE'", "not a nixlos manifest: %v", err)
	}
	if m.Flake.Dir != "" && !filepath.IsAbs(m.Flake.Dir) {
		m.Flake.Dir = filepath.Join(filepath.Dir(path), m.Flake.Dir)
	}
	return m, nil
}
