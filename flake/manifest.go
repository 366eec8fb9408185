package flake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/imagepath"
)

// EmbeddedDir is where the flake lives inside the installer image; it is
// the manifest's flake.dir unless told otherwise.
const EmbeddedDir = "/" + imagepath.Flake

// DefaultAgeKeyFile is sops-nix's usual key path, used when a host does not
// set sops.age.keyFile.
const DefaultAgeKeyFile = "/var/lib/sops-nix/key.txt"

// Manifest is the install manifest of DESIGN.md (/etc/nixlos/manifest.json).
type Manifest struct {
	Version int             `json:"version"`
	Flake   Info            `json:"flake"`
	Hosts   map[string]Host `json:"hosts"`
	// Errors are the hosts that did not evaluate (see Export), by name;
	// they are not in Hosts. Not part of the manifest file.
	Errors map[string]*HostError `json:"-"`
	// Cache is the signed binary cache the media carry (mkiso build
	// --closure); nil when they carry none.
	Cache *Cache `json:"cache,omitempty"`
	// Inputs are the flake's locked inputs that the media's cache carries
	// (mkiso build): the installer copies them into the target's store
	// before it evaluates and builds the flake, with no network.
	Inputs []Input `json:"inputs,omitempty"`
}

// Cache says where the media's binary cache is and which key signed it.
type Cache struct {
	// PublicKey (name:base64, Nix's format) is the only key the installer
	// trusts when copying a closure from the cache. Empty when the cache
	// holds only the flake's inputs (no --closure): those are
	// content-addressed store paths, which Nix checks against their hash.
	PublicKey string `json:"publicKey"`
	// Dir is the cache's directory on the medium's filesystem and its path
	// under the nixlos.server URL ("nix-cache").
	Dir string `json:"dir"`
}

// Info describes the flake a manifest was made from.
type Info struct {
	Dir     string `json:"dir"`
	Rev     string `json:"rev"`
	Dirty   bool   `json:"dirty,omitempty"`
	NarHash string `json:"narHash,omitempty"`
}

// Host is one nixosConfigurations entry.
type Host struct {
	System string `json:"system"`
	// Disko is config.disko.devices as JSON (functions and _-prefixed
	// attributes dropped); null when the host has no disk layout.
	Disko      json.RawMessage `json:"disko"`
	AgeKeyFile string          `json:"ageKeyFile"`
	SopsFile   string          `json:"sopsFile,omitempty"` // relative to the flake
	// Toplevel is the host's built system (/nix/store/…) whose closure the
	// media's cache holds; "" when the media carry none for this host.
	Toplevel string `json:"toplevel,omitempty"`
	// BootLoader is the host's boot loader for the installer's pre-flight
	// gate: "systemd-boot", "grub" (BIOS only), "grub-efi" (efiSupport),
	// or "" (none enabled, or not known).
	BootLoader string `json:"bootLoader,omitempty"`
	// DiskRules are the host's nixlos.diskRules option: layout disk →
	// "match:…" rules (package diskrules) choosing its physical disk when
	// neither the command line nor the PXE map names one.
	DiskRules map[string]string `json:"diskRules,omitempty"`
}

// Disk is one entry of a layout's disko.devices.disk.
type Disk struct {
	Key    string `json:"key"`
	Device string `json:"device"`
}

// Disks returns the layout's disks sorted by key; nil without a layout.
func (h Host) Disks() []Disk {
	var d struct {
		Disk map[string]struct {
			Device string `json:"device"`
		} `json:"disk"`
	}
	if len(h.Disko) == 0 || json.Unmarshal(h.Disko, &d) != nil {
		return nil
	}
	var out []Disk
	for k, v := range d.Disk {
		out = append(out, Disk{Key: k, Device: v.Device})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// HasLayout reports whether the host declares at least one disk in disko.devices.
func (h Host) HasLayout() bool { return len(h.Disks()) > 0 }

// HostNames returns the hosts in sorted order.
func (m *Manifest) HostNames() []string {
	names := make([]string, 0, len(m.Hosts))
	for n := range m.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NoLayoutFix says how to give a host a disk layout.
const NoLayoutFix = "import disko's NixOS module (disko.nixosModules.disko) in the host's modules in flake.nix and set disko.devices there"

// noLayoutFix is NoLayoutFix for one host.
func noLayoutFix(name string) string {
	return "import disko's NixOS module (disko.nixosModules.disko) in nixosConfigurations." + name + "'s modules in flake.nix and set disko.devices there"
}

// AllHostNames returns every host of the flake that was evaluated, those
// that failed (Errors) included, in sorted order.
func (m *Manifest) AllHostNames() []string {
	names := m.HostNames()
	for n := range m.Errors {
		if _, ok := m.Hosts[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Broken returns the hosts that did not evaluate, sorted.
func (m *Manifest) Broken() []string {
	var names []string
	for n := range m.Errors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Select returns the named host, refusing (input error) unknown hosts,
// hosts that did not evaluate (with their error and fix) and hosts
// without a disk layout.
func (m *Manifest) Select(name string) (Host, error) {
	if e, ok := m.Errors[name]; ok {
		return Host{}, e.InputError()
	}
	h, ok := m.Hosts[name]
	if !ok {
		return Host{}, errs.BadInput(name, "choose one of: "+strings.Join(m.AllHostNames(), ", "), "no such host in the flake")
	}
	if !h.HasLayout() {
		return Host{}, errs.BadInput(name, noLayoutFix(name), "host has no disk layout (config.disko.devices has no disks)")
	}
	return h, nil
}

// Only returns a copy of m holding just the selected host (see Select).
func (m *Manifest) Only(name string) (*Manifest, error) {
	h, err := m.Select(name)
	if err != nil {
		return nil, err
	}
	c := *m
	c.Hosts = map[string]Host{name: h}
	c.Errors = nil
	return &c, nil
}

// Decode parses a manifest (as written by mkiso into the image).
func Decode(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("decode manifest: unsupported version %d (want 1)", m.Version)
	}
	for name, h := range m.Hosts {
		if d := bytes.TrimSpace(h.Disko); len(d) > 0 && string(d) != "null" && d[0] != '{' {
			return nil, fmt.Errorf("decode manifest: host %s: disko is not an object", name)
		}
	}
	return &m, nil
}
