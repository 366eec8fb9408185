package flake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/internal/cli"
)

// EmbeddedDir is where the flake lives inside the installer image; it is
// the manifest's flake.dir unless told otherwise.
const EmbeddedDir = "/etc/nixlos/flake"

// DefaultAgeKeyFile is sops-nix's usual key path, used when a host does not
// set sops.age.keyFile.
const DefaultAgeKeyFile = "/var/lib/sops-nix/key.txt"

// Manifest is the install manifest of DESIGN.md (/etc/nixlos/manifest.json).
type Manifest struct {
	Version int             `json:"version"`
	Flake   Info            `json:"flake"`
	Hosts   map[string]Host `json:"hosts"`
	// Cache is the signed binary cache the media carry (mkiso build
	// --closure); nil when they carry none.
	Cache *Cache `json:"cache,omitempty"`
}

// Cache says where the media's binary cache is and which key signed it.
type Cache struct {
	// PublicKey (name:base64, Nix's format) is the only key the installer
	// trusts when copying a closure from the cache.
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
const NoLayoutFix = "import disko's NixOS module in the host and set disko.devices (see examples/nix-los/hosts/laptop/disko.nix)"

// Select returns the named host, refusing (input error) unknown hosts and
// hosts without a disk layout.
func (m *Manifest) Select(name string) (Host, error) {
	h, ok := m.Hosts[name]
	if !ok {
		return Host{}, cli.BadInput(name, "choose one of: "+strings.Join(m.HostNames(), ", "), "no such host in the flake")
	}
	if !h.HasLayout() {
		return Host{}, cli.BadInput(name, NoLayoutFix, "host has no disk layout (config.disko.devices has no disks)")
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
	return &c, nil
}

// evalExpr is the one expression `nix eval` runs for all hosts. The %s are the
// flake reference and its subdirectory as Nix string literals.
const evalExpr = `
let
  flake = builtins.getFlake %s;
  subdir = %s;
  base = toString flake.outPath;
  # Nix 2.8 gives the repository's root for a git flake with dir=; newer
  # Nix may give the flake's own directory. Paths are made relative to the latter.
  root = if subdir != "" && builtins.pathExists (base + "/" + subdir + "/flake.nix") then base + "/" + subdir else base;
  try = v: let r = builtins.tryEval v; in if r.success then r.value else null;
  keep = v: n: builtins.substring 0 1 n != "_" && !builtins.isFunction v.${n};
  clean = v:
    if builtins.isAttrs v then
      builtins.listToAttrs (map (n: { name = n; value = clean v.${n}; }) (builtins.filter (keep v) (builtins.attrNames v)))
    else if builtins.isList v then map clean (builtins.filter (x: !builtins.isFunction x) v)
    else if builtins.isPath v then toString v
    else v;
  rel = p:
    let s = toString p; n = builtins.stringLength root + 1; in
    if builtins.substring 0 n s == root + "/" then builtins.substring n (-1) s else s;
  str = v: if builtins.isString v || builtins.isPath v then toString v else "";
  host = name: h:
    let
      c = h.config or { };
      devices = c.disko.devices or null;
      hp = try (c.nixpkgs.hostPlatform or null);
      sys = if builtins.isAttrs hp then str (hp.system or "")
        else if builtins.isString hp then hp
        else str (try (h.pkgs.system or ""));
      key = try (c.sops.age.keyFile or null);
      sops = try (c.sops.defaultSopsFile or null);
    in {
      system = sys;
      disko = if builtins.isAttrs devices then clean devices else null;
      ageKeyFile = str key;
      sopsFile = if sops == null then "" else rel sops;
    };
  configs = flake.nixosConfigurations or null;
in {
  rev = flake.rev or "";
  narHash = flake.narHash or "";
  hasNixosConfigurations = builtins.isAttrs configs;
  hosts = if builtins.isAttrs configs then builtins.mapAttrs host configs else { };
}
`

// nixString quotes s as a Nix string literal.
func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// EvalArgs are the nix arguments (after Flags) of the one evaluation Export runs.
func EvalArgs(f *Flake) []string {
	return []string{"eval", "--json", "--impure", "--expr", fmt.Sprintf(evalExpr, nixString(f.Ref()), nixString(f.Subdir))}
}

// evalResult is what evalExpr prints.
type evalResult struct {
	Rev                    string              `json:"rev"`
	NarHash                string              `json:"narHash"`
	HasNixosConfigurations bool                `json:"hasNixosConfigurations"`
	Hosts                  map[string]evalHost `json:"hosts"`
}

type evalHost struct {
	System     string          `json:"system"`
	Disko      json.RawMessage `json:"disko"`
	AgeKeyFile string          `json:"ageKeyFile"`
	SopsFile   string          `json:"sopsFile"`
}

// decodeEval parses evalExpr's output. It only fails on malformed JSON or
// shapes Nix could not have printed (disko that is not an object or null).
func decodeEval(data []byte) (*evalResult, error) {
	var r evalResult
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decode nix eval output: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode nix eval output: trailing data")
	}
	for name, h := range r.Hosts {
		if name == "" {
			return nil, fmt.Errorf("decode nix eval output: empty host name")
		}
		d := bytes.TrimSpace(h.Disko)
		if len(d) == 0 || string(d) == "null" {
			h.Disko = nil
		} else if d[0] != '{' {
			return nil, fmt.Errorf("decode nix eval output: host %s: disko is not an attribute set", name)
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, d); err != nil {
				return nil, fmt.Errorf("decode nix eval output: host %s: %w", name, err)
			}
			h.Disko = buf.Bytes()
		}
		r.Hosts[name] = h
	}
	return &r, nil
}

// Options tune Export.
type Options struct {
	Nix Nix
	Dir string // flake.dir in the manifest; "" means EmbeddedDir
}

// Export evaluates every host of f with one `nix eval` and returns the
// manifest. Input problems (evaluation errors, no nixosConfigurations, no
// hosts) are *cli.InputError; hosts without a disk layout are kept (see Select).
func Export(ctx context.Context, f *Flake, opt Options) (*Manifest, error) {
	out, err := opt.Nix.Run(ctx, EvalArgs(f)...)
	if err != nil {
		return nil, evalError(f, err)
	}
	r, err := decodeEval(out)
	if err != nil {
		return nil, err
	}
	return fromEval(f, r, opt)
}

func fromEval(f *Flake, r *evalResult, opt Options) (*Manifest, error) {
	if !r.HasNixosConfigurations {
		return nil, cli.BadInput(f.Dir, "add outputs.nixosConfigurations.<host> = nixpkgs.lib.nixosSystem { ... } to flake.nix", "the flake has no nixosConfigurations output")
	}
	if len(r.Hosts) == 0 {
		return nil, cli.BadInput(f.Dir, "add at least one host under outputs.nixosConfigurations in flake.nix", "nixosConfigurations has no hosts")
	}
	m := &Manifest{Version: 1, Flake: Info{Dir: opt.Dir, Rev: r.Rev, NarHash: r.NarHash}, Hosts: map[string]Host{}}
	if m.Flake.Dir == "" {
		m.Flake.Dir = EmbeddedDir
	}
	m.Flake.Dirty = f.IsGit() && r.Rev == ""
	for name, h := range r.Hosts {
		key := h.AgeKeyFile
		if key == "" {
			key = DefaultAgeKeyFile
		}
		m.Hosts[name] = Host{System: h.System, Disko: h.Disko, AgeKeyFile: key, SopsFile: h.SopsFile}
	}
	return m, nil
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
