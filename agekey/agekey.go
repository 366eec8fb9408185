// Package agekey handles the age key that decrypts a host's sops secrets:
// generate it, read it, check that it opens a host's sopsFile (in memory),
// and install it on the target. It does not import the sops library (which
// adds ~40 MB to a binary): the installer embeds this package. Encrypting
// with the sops library lives in agekey/sopsfile (workstation side).
//
// The private key never appears in an error or in output.
package agekey

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/fsutil"
)

// Key is an age X25519 identity.
type Key struct {
	id *age.X25519Identity
}

// Generate makes a new random age identity.
func Generate() (*Key, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate age key: %w", err)
	}
	return &Key{id: id}, nil
}

// Recipient is the public key (age1...), safe to print.
func (k *Key) Recipient() string { return k.id.Recipient().String() }

// Identity is the key for the age library.
func (k *Key) Identity() age.Identity { return k.id }

// File is the identity in age-keygen's file format. Secret: write it 0600.
func (k *Key) File() []byte {
	return fmt.Appendf(nil, "# created: %s\n# public key: %s\n%s\n",
		time.Now().UTC().Format(time.RFC3339), k.Recipient(), k.id.String())
}

// String never shows the private key.
func (k *Key) String() string { return "age key " + k.Recipient() }

// ErrNotIdentity: the data is not an age identity file.
var ErrNotIdentity = errors.New("not an age identity file (want one line starting with AGE-SECRET-KEY-1, as age-keygen writes)")

// Parse reads an identity file (age-keygen format: comments, one
// AGE-SECRET-KEY-1 line). Errors never quote the input.
func Parse(data []byte) (*Key, error) {
	var found *age.X25519Identity
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%w: more than one key", ErrNotIdentity)
		}
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, ErrNotIdentity // the inner error may echo the line
		}
		found = id
	}
	if found == nil {
		return nil, ErrNotIdentity
	}
	return &Key{id: found}, nil
}

// Load reads an identity file; a bad file is an input error naming the path.
func Load(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errs.BadInput(path, "give the age key file (age-keygen -o FILE makes one)", "does not exist")
		}
		return nil, fmt.Errorf("read age key %s: %w", path, err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, errs.BadInput(path, "give an age identity file (age-keygen -o FILE makes one)", "%v", err)
	}
	return k, nil
}

// Write stores the identity at path with mode 0600 (replacing any file),
// creating missing parent directories 0700.
func Write(path string, k *Key) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write age key %s: %w", path, err)
	}
	return writeSecret(path, k.File())
}

// writeSecret writes data to path, 0600 from the start (never briefly
// world-readable), atomically.
func writeSecret(path string, data []byte) error {
	if _, err := fsutil.WriteAtomic(path, 0o600, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return fmt.Errorf("write age key %s: %w", path, err)
	}
	return nil
}

// Install puts the key at root+keyFile on the target (keyFile is the host's
// sops.age.keyFile, absolute): file mode 0600, parent directory 0700, both
// owned by root. Missing directories above the parent are made 0755.
func Install(root, keyFile string, k *Key) (string, error) {
	if !filepath.IsAbs(keyFile) {
		return "", errs.BadInput(keyFile, "set sops.age.keyFile to an absolute path", "age key path is not absolute")
	}
	dst := filepath.Join(root, filepath.Clean(keyFile))
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(filepath.Dir(parent), 0o755); err != nil {
		return "", fmt.Errorf("install age key: %w", err)
	}
	if err := os.Mkdir(parent, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("install age key: %w", err)
	}
	if err := os.Chmod(parent, 0o700); err != nil {
		return "", fmt.Errorf("install age key: %w", err)
	}
	if err := os.Lchown(parent, 0, 0); err != nil {
		return "", fmt.Errorf("install age key: owner root of %s: %w", parent, err)
	}
	if err := writeSecret(dst, k.File()); err != nil {
		return "", fmt.Errorf("install age key: %w", err)
	}
	if err := os.Lchown(dst, 0, 0); err != nil {
		return "", fmt.Errorf("install age key: owner root of %s: %w", dst, err)
	}
	return dst, nil
}
