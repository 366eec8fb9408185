package flake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nixlos/nixlos/internal/errs"
)

// evalExpr is the expression `nix eval` runs. The %s are the flake
// reference, its subdirectory, the hosts to evaluate (null: all) and the
// hosts to skip (found broken by an earlier run), as Nix literals.
//
// No value is ever replaced by a default after it failed: an option that is
// missing (`or`) defaults, an option that errors fails the host. Each host
// is forced completely (deepSeq) inside an error context naming it, so that
// a failure's trace (--show-trace) says which host failed; Export then
// evaluates the others again without it.
const evalExpr = `
let
  flake = builtins.getFlake %s;
  subdir = %s;
  only = %s;
  skip = %s;
  base = toString flake.outPath;
  # Nix 2.8 gives the repository's root for a git flake with dir=; newer
  # Nix may give the flake's own directory. Paths are made relative to the latter.
  root = if subdir != "" && builtins.pathExists (base + "/" + subdir + "/flake.nix") then base + "/" + subdir else base;
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
  # str is a string or path option's value; anything else is the host's error.
  str = opt: v:
    if v == null then ""
    else if builtins.isString v || builtins.isPath v then toString v
    else throw "nixlos: option ${opt}: a ${builtins.typeOf v}, not a string or path";
  host = name: h:
    let
      c = h.config or { };
      devices = c.disko.devices or null;
      hp = c.nixpkgs.hostPlatform or null;
      sys = if builtins.isAttrs hp then str "nixpkgs.hostPlatform.system" (hp.system or null)
        else if hp != null then str "nixpkgs.hostPlatform" hp
        else str "pkgs.system" (h.pkgs.system or null);
      sops = c.sops.defaultSopsFile or null;
      r = {
        system = sys;
        disko = if devices == null then null
          else if builtins.isAttrs devices then clean devices
          else throw "nixlos: option disko.devices: a ${builtins.typeOf devices}, not an attribute set";
        ageKeyFile = str "sops.age.keyFile" (c.sops.age.keyFile or null);
        sopsFile = if sops == null then "" else rel (str "sops.defaultSopsFile" sops);
        # For the installer's pre-flight gate (package preflight).
        bootLoader = let l = c.boot.loader or { }; in
          if (l.systemd-boot.enable or false) == true then "systemd-boot"
          else if (l.grub.enable or false) == true then (if (l.grub.efiSupport or false) == true then "grub-efi" else "grub")
          else "";
        # nixlos.diskRules.<disk> = "match:…" (package diskrules), when the
        # host declares that option.
        diskRules = let r = c.nixlos.diskRules or { }; in
          if builtins.isAttrs r then builtins.mapAttrs (k: v: str "nixlos.diskRules.${k}" v) r
          else throw "nixlos: option nixlos.diskRules: a ${builtins.typeOf r}, not an attribute set";
      };
    in builtins.addErrorContext "nixlos: host ${builtins.toJSON name}" (builtins.deepSeq r r);
  configs = flake.nixosConfigurations or null;
  names = if builtins.isAttrs configs then builtins.attrNames configs else [ ];
  wanted = if only == null then names else builtins.filter (n: builtins.elem n names) only;
  selected = builtins.filter (n: !builtins.elem n skip) wanted;
in {
  rev = flake.rev or "";
  narHash = flake.narHash or "";
  hasNixosConfigurations = builtins.isAttrs configs;
  inherit names;
  hosts = builtins.listToAttrs (map (n: { name = n; value = host n configs.${n}; }) selected);
}
`

// hostMarker starts the error context evalExpr puts around each host; the
// host's name follows as a JSON string.
const hostMarker = "nixlos: host "

// nixString quotes s as a Nix string literal.
func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// nixList is a Nix list of string literals; nil is Nix's null.
func nixList(ss []string) string {
	if ss == nil {
		return "null"
	}
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = nixString(s)
	}
	return "[ " + strings.Join(q, " ") + " ]"
}

// EvalArgs are the nix arguments (after Flags) of the one evaluation Export
// runs when every host evaluates: all hosts, or only those named.
func EvalArgs(f *Flake, only ...string) []string {
	if len(only) == 0 {
		only = nil
	}
	return evalArgs(f, only, []string{})
}

func evalArgs(f *Flake, only, skip []string) []string {
	if skip == nil {
		skip = []string{}
	}
	return []string{"eval", "--json", "--impure", "--show-trace", "--expr",
		fmt.Sprintf(evalExpr, nixString(f.Ref()), nixString(f.Subdir), nixList(only), nixList(skip))}
}

// evalResult is what evalExpr prints.
type evalResult struct {
	Rev                    string              `json:"rev"`
	NarHash                string              `json:"narHash"`
	HasNixosConfigurations bool                `json:"hasNixosConfigurations"`
	Names                  []string            `json:"names"`
	Hosts                  map[string]evalHost `json:"hosts"`
}

type evalHost struct {
	System     string            `json:"system"`
	Disko      json.RawMessage   `json:"disko"`
	AgeKeyFile string            `json:"ageKeyFile"`
	SopsFile   string            `json:"sopsFile"`
	BootLoader string            `json:"bootLoader"`
	DiskRules  map[string]string `json:"diskRules"`
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
	// Hosts, when set, are the only hosts evaluated (mkiso build --host,
	// mkiso manifest --host): other hosts' errors cannot fail them. A name
	// the flake does not have is an input error.
	Hosts []string
	// Parallel bounds the per-host evaluations run when a failure names no
	// host (default 2).
	Parallel int
}

// Export evaluates the hosts of f and returns the manifest. When every host
// evaluates, that is one `nix eval`. A host whose evaluation fails is in
// m.Errors (with its option path, the user's file and a fix), not in
// m.Hosts, and the other hosts are evaluated again without it: one more
// `nix eval` per broken host (see evalHosts). With opt.Hosts only those
// hosts are evaluated, so a broken host that is not selected costs nothing.
// Flake-level problems (flake.nix does not evaluate, no nixosConfigurations,
// no hosts, an unknown selected host) are *errs.InputError.
//
// Cost, measured with Nix 2.8 on the realflakes fixtures (real disko and
// sops-nix modules, 2 shared cores; BenchmarkRealFlakesExport): 4 good hosts
// 92 ms (bare nix eval of their devices 51 ms); the same run with
// --show-trace and the per-host error context costs nothing measurable
// when it succeeds. A failing run costs about 0.5 s, most of it Nix
// rendering the trace: 1 broken host of 3 is 0.56 s (2 runs), 3 of 4 are
// 1.6 s (4 runs); the per-host fallback (a failure without a host in its
// trace) is 0.55 s for 3 hosts.
func Export(ctx context.Context, f *Flake, opt Options) (*Manifest, error) {
	var only []string
	if len(opt.Hosts) > 0 {
		only = slices.Clone(opt.Hosts)
	}
	r, failures, err := evalHosts(ctx, f, opt, only)
	if err != nil {
		return nil, err
	}
	m, err := fromEval(f, r, opt)
	if err != nil {
		return nil, err
	}
	for _, name := range opt.Hosts {
		if !slices.Contains(r.Names, name) {
			return nil, errs.BadInput(name, "choose one of: "+strings.Join(r.Names, ", "), "no such host in the flake (nixosConfigurations)")
		}
	}
	if len(failures) > 0 {
		m.Errors = failures
	}
	return m, nil
}

// evalHosts runs evalExpr until it succeeds. A failure whose trace names a
// host (the error context evalExpr adds) makes that host's HostError, and
// the next run skips it: k broken hosts cost k+1 runs. A failure that names
// no host is either the flake's own (a run that skips every host fails
// too: returned as the flake's input error) or one Nix gave no trace for
// (a crash, a stack overflow): then each remaining host is evaluated alone,
// opt.Parallel at a time, so that the failing ones are found anyway.
func evalHosts(ctx context.Context, f *Flake, opt Options, only []string) (*evalResult, map[string]*HostError, error) {
	failures := map[string]*HostError{}
	skip := []string{}
	for {
		out, err := opt.Nix.Run(ctx, evalArgs(f, only, skip)...)
		if err == nil {
			r, err := decodeEval(out)
			return r, failures, err
		}
		var ne *NixError
		if !errors.As(err, &ne) {
			return nil, nil, err
		}
		d := parseNixError(ne.Stderr)
		if d.Host != "" && !slices.Contains(skip, d.Host) && (only == nil || slices.Contains(only, d.Host)) {
			failures[d.Host] = newHostError(f, d.Host, d)
			skip = append(skip, d.Host)
			continue
		}
		return evalEach(ctx, f, opt, only, skip, failures, err)
	}
}

// evalEach is evalHosts' fallback for a failure that names no host: it
// lists the hosts with a run that evaluates none (its failure is the
// flake's), then evaluates each one alone.
func evalEach(ctx context.Context, f *Flake, opt Options, only, skip []string, failures map[string]*HostError, first error) (*evalResult, map[string]*HostError, error) {
	out, err := opt.Nix.Run(ctx, evalArgs(f, []string{}, nil)...)
	if err != nil {
		return nil, nil, evalError(f, first)
	}
	r, err := decodeEval(out)
	if err != nil {
		return nil, nil, err
	}
	var todo []string
	for _, n := range r.Names {
		if (only == nil || slices.Contains(only, n)) && !slices.Contains(skip, n) {
			todo = append(todo, n)
		}
	}
	par := opt.Parallel
	if par <= 0 {
		par = 2
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var fatal error
	sem := make(chan struct{}, par)
	r.Hosts = map[string]evalHost{}
	for _, n := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out, err := opt.Nix.Run(ctx, evalArgs(f, []string{n}, nil)...)
			var one *evalResult
			if err == nil {
				one, err = decodeEval(out)
			}
			mu.Lock()
			defer mu.Unlock()
			var ne *NixError
			switch {
			case err == nil:
				if h, ok := one.Hosts[n]; ok {
					r.Hosts[n] = h
				}
			case errors.As(err, &ne):
				failures[n] = newHostError(f, n, parseNixError(ne.Stderr))
			case fatal == nil:
				fatal = err
			}
		}()
	}
	wg.Wait()
	if fatal != nil {
		return nil, nil, fatal
	}
	return r, failures, nil
}

func fromEval(f *Flake, r *evalResult, opt Options) (*Manifest, error) {
	if !r.HasNixosConfigurations {
		return nil, errs.BadInput(f.Dir, "add outputs.nixosConfigurations.<host> = nixpkgs.lib.nixosSystem { ... } to flake.nix", "the flake has no nixosConfigurations output")
	}
	if len(r.Names) == 0 && len(r.Hosts) == 0 {
		return nil, errs.BadInput(f.Dir, "add at least one host under outputs.nixosConfigurations in flake.nix", "nixosConfigurations has no hosts")
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
		m.Hosts[name] = Host{System: h.System, Disko: h.Disko, AgeKeyFile: key, SopsFile: h.SopsFile,
			BootLoader: h.BootLoader, DiskRules: h.DiskRules}
	}
	return m, nil
}
