// Package closure carries NixOS system closures on the installer media: a
// signed Nix binary cache made at build time (Build) with a signing key made
// for that build alone (GenerateKey), read back for `mkiso inspect`
// (Summarize), and, on the installer, found on the boot medium or the PXE
// server (Locate) and copied into the target's store with its signatures
// checked against the one key the manifest names (Source.Copy).
//
// # Layout
//
// The cache is a plain `nix copy --to file://DIR` directory (nix-cache-info,
// HASH.narinfo, nar/FILEHASH.nar.zst), at CacheDir ("nix-cache") of:
//   - the ISO's filesystem (/nix-cache);
//   - the USB image's second GPT partition, named CachePartName, which holds
//     an ISO 9660 filesystem (Rock Ridge names) with volume ID CacheVolume;
//   - the PXE bundle (pxe/nix-cache), which `mkiso serve` serves as
//     http://ADDR:PORT/nix-cache/.
//
// Never in the initramfs: RAM is for the installer.
package closure

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CacheDir is the cache's directory on every medium and its path under
// the PXE server's URL.
const CacheDir = "nix-cache"

// CachePartName is the GPT name of the USB image's cache partition;
// CacheVolume is the ISO 9660 volume ID of the filesystem inside it.
const (
	CachePartName = "NIXLOS-CACHE"
	CacheVolume   = "NIXLOS_CACHE"
)

// SecretKey is an ed25519 signing key in Nix's format (name:base64). It is
// made per build and never written to the media or the output directory.
type SecretKey struct {
	Name string
	key  ed25519.PrivateKey
}

// GenerateKey makes a new signing key named name ("" = nixlos-<random>),
// as `nix key generate-secret --key-name NAME` does.
func GenerateKey(name string) (*SecretKey, error) {
	if name == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		name = "nixlos-" + hex.EncodeToString(b[:])
	}
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &SecretKey{Name: name, key: priv}, nil
}

func checkKeyName(name string) error {
	if name == "" || strings.ContainsAny(name, ": \t\n") {
		return fmt.Errorf("key name %q: want a non-empty name without ':' or spaces", name)
	}
	return nil
}

// ParseSecretKey reads Nix's secret key format (name:base64 of the 64-byte
// ed25519 private key).
func ParseSecretKey(s string) (*SecretKey, error) {
	name, b, err := splitKey(s, ed25519.PrivateKeySize)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return &SecretKey{Name: name, key: ed25519.PrivateKey(b)}, nil
}

// String is the key in Nix's secret key file format. Only for writing the
// key file: never print it.
func (k *SecretKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.key)
}

// Public is the public key in Nix's format, for trusted-public-keys.
func (k *SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.key.Public().(ed25519.PublicKey)}
}

// Sign signs a narinfo fingerprint; the result is a Sig: value.
func (k *SecretKey) Sign(fingerprint string) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.key, []byte(fingerprint)))
}

// WriteTemp writes the key to a new private directory outside any output
// (mode 0700, file 0600) for `nix copy ?secret-key=FILE`, where a memfd
// cannot be made. remove deletes both; call it as soon as the copy is done.
func (k *SecretKey) WriteTemp() (file string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "nixlos-signing-")
	if err != nil {
		return "", func() {}, err
	}
	remove = func() { os.RemoveAll(dir) }
	file = filepath.Join(dir, "secret-key")
	if err := os.WriteFile(file, []byte(k.String()), 0o600); err != nil {
		remove()
		return "", func() {}, err
	}
	return file, remove, nil
}

// memfd returns the key in Nix's format in an anonymous memory file.
func (k *SecretKey) memfd() (*os.File, error) {
	fd, err := unix.MemfdCreate("nixlos-signing-key", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "nixlos-signing-key")
	if _, err := f.WriteString(k.String()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// PublicKey is an ed25519 public key with its name, as Nix writes it.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// ParsePublicKey reads name:base64 (32-byte ed25519 key).
func ParsePublicKey(s string) (PublicKey, error) {
	name, b, err := splitKey(strings.TrimSpace(s), ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(b)}, nil
}

func (p PublicKey) String() string {
	return p.Name + ":" + base64.StdEncoding.EncodeToString(p.Key)
}

// Verify reports whether sig (a narinfo Sig: value) is this key's
// signature of fingerprint.
func (p PublicKey) Verify(fingerprint, sig string) bool {
	name, b, err := splitKey(sig, ed25519.SignatureSize)
	return err == nil && name == p.Name && ed25519.Verify(p.Key, []byte(fingerprint), b)
}

func splitKey(s string, size int) (string, []byte, error) {
	name, b64, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return "", nil, errors.New("want NAME:BASE64")
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("key %s: %w", name, err)
	}
	if len(b) != size {
		return "", nil, fmt.Errorf("key %s: %d bytes, want %d", name, len(b), size)
	}
	return name, b, nil
}
