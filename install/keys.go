package install

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"
)

// RAM filesystems a secret may be written to.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// statfsType returns the filesystem magic of path (tests replace it).
var statfsType = func(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Type), nil
}

// checkRAMPath refuses a key file path whose nearest existing parent is
// not on tmpfs or ramfs.
func checkRAMPath(path string) error {
	if !filepath.IsAbs(path) {
		return errors.New("not an absolute path")
	}
	dir := filepath.Dir(path)
	for !fileExists(dir) {
		dir = filepath.Dir(dir)
	}
	t, err := statfsType(dir)
	if err != nil {
		return err
	}
	if t != tmpfsMagic && t != ramfsMagic {
		return fmt.Errorf("%s is not on tmpfs or ramfs: a passphrase is never written to a disk", dir)
	}
	return nil
}

// hasYAMLPath reports whether the YAML mapping data has a scalar at the
// dotted path.
func hasYAMLPath(data []byte, path string) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return false
	}
	n := doc.Content[0]
	for _, k := range strings.Split(path, ".") {
		if n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
	return n.Kind == yaml.ScalarNode && n.Value != ""
}

// writeKeyFile writes a passphrase 0600 (no trailing newline), creating
// missing parents 0700. It refuses to replace an existing file.
func writeKeyFile(path string, pass []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(pass); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
