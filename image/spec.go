// Package image writes nixlos installer media from a kernel, an initrd and a
// kernel command line: a hybrid ISO (BIOS/UEFI, CD/USB), a raw GPT USB image
// and a PXE bundle, plus SHA256SUMS; and reads any of them back (Inspect).
//
// Outputs are reproducible: the same inputs and Epoch give byte-identical
// files (timestamps are Epoch; GUIDs, serials and disk IDs derive from a hash
// of the inputs).
package image

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Format is one kind of output medium.
type Format string

// The output formats and their file names under the output directory.
const (
	FormatISO Format = "iso" // nixlos.iso
	FormatUSB Format = "usb" // nixlos-usb.img
	FormatPXE Format = "pxe" // pxe/
)

// Output file names, as DESIGN.md "Build outputs" fixes them.
const (
	ISOName  = "nixlos.iso"
	USBName  = "nixlos-usb.img"
	PXEDir   = "pxe"
	SumsName = "SHA256SUMS"
)

// AllFormats is the default set of formats, in build order.
var AllFormats = []Format{FormatISO, FormatUSB, FormatPXE}

// Spec says what to build. Kernel and Initrd are paths; Cmdline is appended
// to the console arguments on every menu entry.
type Spec struct {
	Kernel  string        // bzImage path
	Initrd  string        // initrd path (one or more concatenated cpio archives)
	Cmdline string        // extra kernel arguments for every entry (may be empty)
	Hosts   []string      // one menu entry per host, appending nixlos.host=NAME
	Timeout time.Duration // menu timeout; 0 means DefaultTimeout
	Label   string        // ISO volume / FAT label; empty means "NIXLOS"
	Epoch   int64         // SOURCE_DATE_EPOCH: every timestamp in the outputs
	Tools   Tools         // boot loader files from the host; zero value = Debian paths
	// NixCache is a binary cache directory (package closure) to carry on
	// every medium, outside the initramfs; "" = none.
	NixCache string
}

// DefaultTimeout is the boot menu timeout when Spec.Timeout is 0.
const DefaultTimeout = 3 * time.Second

// Report lists what Build wrote and how long each format took.
type Report struct {
	Outputs []Output
}

// Output is one written file or directory.
type Output struct {
	Format   Format
	Path     string
	Size     int64
	Duration time.Duration
}

func (s Spec) label() string {
	if s.Label == "" {
		return "NIXLOS"
	}
	return s.Label
}

func (s Spec) timeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultTimeout
	}
	return s.Timeout
}

func (s Spec) epoch() time.Time { return time.Unix(s.Epoch, 0).UTC() }

// check verifies the kernel and initrd exist and are regular files.
func (s Spec) check() error {
	for _, p := range []struct{ what, path string }{{"kernel", s.Kernel}, {"initrd", s.Initrd}} {
		fi, err := os.Stat(p.path)
		if err != nil {
			return fmt.Errorf("%s: %w", p.what, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s %s: not a regular file", p.what, p.path)
		}
	}
	if s.NixCache != "" {
		if fi, err := os.Stat(filepath.Join(s.NixCache, "nix-cache-info")); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("nix cache %s: no nix-cache-info (not a binary cache directory)", s.NixCache)
		}
	}
	for _, h := range s.Hosts {
		if !hostName.MatchString(h) {
			return fmt.Errorf("host name %q: only letters, digits, '.', '_' and '-' are allowed", h)
		}
	}
	return s.Tools.withDefaults().check()
}

// seed is a hash of every input that shapes the outputs; IDs derive from it.
func (s Spec) seed() ([32]byte, error) {
	h := sha256.New()
	for _, p := range []string{s.Kernel, s.Initrd} {
		f, err := os.Open(p)
		if err != nil {
			return [32]byte{}, err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return [32]byte{}, fmt.Errorf("hash %s: %w", p, err)
		}
	}
	fmt.Fprintf(h, "\x00%q\x00%q\x00%d\x00%s\x00%d", s.Cmdline, s.Hosts, s.Timeout, s.label(), s.Epoch)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// derive returns 16 bytes derived from seed for the named purpose.
func derive(seed [32]byte, purpose string) [16]byte {
	h := sha256.Sum256(append(seed[:], purpose...))
	var out [16]byte
	copy(out[:], h[:16])
	return out
}

// deriveGUID returns an RFC 4122 version-4-shaped GUID string from seed.
func deriveGUID(seed [32]byte, purpose string) string {
	b := derive(seed, purpose)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// derive32 returns a 32-bit ID (disk signature, FAT serial) from seed.
func derive32(seed [32]byte, purpose string) uint32 {
	b := derive(seed, purpose)
	return binary.LittleEndian.Uint32(b[:4])
}
