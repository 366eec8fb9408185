// Package pipeline is `mkiso build` as a library: from a flake to installer
// media in four named steps — prepare (export the manifest, copy the flake's
// tracked files), initramfs (package initramfs), images (package image) and
// checksums (SHA256SUMS) — each reported with its time. With
// Options.Closure a fifth step, closure, runs after prepare: it builds the
// hosts' toplevels into a signed binary cache (package closure) that every
// medium carries outside the initramfs, and records each toplevel and the
// cache's public key in the manifest. Then step inputs carries the
// flake's locked inputs (flake.Inputs) in the same cache — unsigned
// without --closure, as they are content-addressed — and lists them in the
// manifest, so the installer builds the flake with no network.
//
// Options are the raw inputs (flags); NewProfile validates them without
// writing anything and returns a Profile; Profile.Steps is the plan, a
// step.List whose steps carry their functions; Build runs it. Every bad
// input is a *errs.InputError (exit 2) naming the input and the fix, found
// before the output directory is touched.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	kernelpkg "github.com/nixlos/nixlos/kernel"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/fsutil"
	"github.com/nixlos/nixlos/internal/progress"
	"github.com/nixlos/nixlos/internal/step"
)

// MinEpoch is the earliest SOURCE_DATE_EPOCH used (1980-01-01 00:00:00
// UTC): FAT timestamps cannot go earlier, so smaller values are clamped.
const MinEpoch = 315532800

// Step names, in order.
const (
	StepPrepare   = "prepare"
	StepClosure   = "closure"
	StepInputs    = "inputs"
	StepInitramfs = "initramfs"
	StepImages    = "images"
	StepChecksums = "checksums"
)

// SecretWarning is printed when the age key is embedded.
const SecretWarning = "warning: the age key is embedded: the media hold a secret (outputs are mode 0600; keep them like the key itself)"

// Options are the raw inputs of a build (the flags of `mkiso build`).
type Options struct {
	Flake      string         // flake directory (required)
	Out        string         // output directory; "" means "out"
	Hosts      []string       // hosts for the menu and manifest; none = every host with a disk layout
	AgeKey     string         // age identity file to embed; "" = no key
	Formats    []image.Format // nil = all
	Cmdline    string         // extra kernel arguments for every menu entry
	Kernel     string         // bzImage; "" = /boot/vmlinuz-<newest version with modules>
	ModulesDir string         // kernel modules; "" = /lib/modules/<kernel version>
	NoCache    bool           // rebuild every initramfs segment, leave the cache alone
	CacheDir   string         // initramfs cache; "" = user cache dir
	// Epoch is SOURCE_DATE_EPOCH; nil means $SOURCE_DATE_EPOCH, else the
	// flake's git commit time, else 0 — always clamped to MinEpoch.
	Epoch *int64
	// Version is the installer's version (its ready line); "" = "dev".
	Version string
	// InstallerBinary, when set, is embedded instead of building the
	// installer from the Go module (tests use it to pin one binary).
	InstallerBinary string
	// GoModuleDir is the nixlos source module (see initramfs.FindModuleDir).
	GoModuleDir string
	// Nix runs nix for the manifest export.
	Nix flake.Nix
	// Closure builds each host's toplevel and carries its closure on the
	// media, signed with a key made for this build (mkiso build --closure).
	Closure bool
}

// Profile is a validated build: every path checked, the key parsed, the
// epoch fixed. Build it with NewProfile.
type Profile struct {
	Flake         *flake.Flake
	Out           string // absolute
	Hosts         []string
	AgeKeyFile    string // "" when no key is embedded
	Formats       []image.Format
	Cmdline       string
	Kernel        string // absolute
	KernelVersion string // release read from the bzImage
	ModulesDir    string // absolute; base name is the version
	NoCache       bool
	CacheDir      string
	// Epoch is SOURCE_DATE_EPOCH: the timestamps of the images (ISO
	// volume, FAT, GPT-derived IDs).
	Epoch int64
	// InitramfsEpoch is every mtime inside the initramfs: always MinEpoch,
	// so the cached initramfs segments (keyed by it) survive a new commit
	// of the flake; a fixed time no later than Epoch keeps the build
	// reproducible.
	InitramfsEpoch int64
	Version        string
	InstallerBin   string
	GoModuleDir    string
	Nix            flake.Nix
	Closure        bool

	ageKey *agekey.Key // never printed
}

// NewProfile checks opt without writing anything.
func NewProfile(opt Options) (*Profile, error) {
	p := &Profile{
		Hosts: append([]string(nil), opt.Hosts...), Cmdline: strings.TrimSpace(opt.Cmdline),
		NoCache: opt.NoCache, CacheDir: opt.CacheDir, Version: opt.Version,
		InstallerBin: opt.InstallerBinary, GoModuleDir: opt.GoModuleDir, Nix: opt.Nix,
		Closure: opt.Closure,
	}
	if p.Version == "" {
		p.Version = initramfs.InstallerVersionDefault
	}
	if opt.Flake == "" {
		return nil, errs.Usagef("no FLAKE given (fix: mkiso build FLAKE, e.g. mkiso build examples/nix-los)")
	}
	f, err := flake.Find(opt.Flake)
	if err != nil {
		return nil, err
	}
	p.Flake = f
	seen := map[string]bool{}
	for _, h := range p.Hosts {
		if h == "" || seen[h] {
			return nil, errs.BadInput("--host "+strconv.Quote(h), "name each host once (mkiso hosts FLAKE lists them)", "empty or repeated host")
		}
		seen[h] = true
	}
	seenFmt := map[image.Format]bool{}
	for _, f := range opt.Formats { // each once: they are built concurrently
		if !seenFmt[f] {
			seenFmt[f] = true
			p.Formats = append(p.Formats, f)
		}
	}
	if len(p.Formats) == 0 {
		p.Formats = image.AllFormats
	}
	if err := p.checkKernel(opt); err != nil {
		return nil, err
	}
	if opt.AgeKey != "" {
		k, err := agekey.Load(opt.AgeKey)
		if err != nil {
			var ie *errs.InputError
			if errors.As(err, &ie) {
				return nil, err
			}
			// Unreadable (permissions, a directory…): still the user's input.
			return nil, errs.BadInput(opt.AgeKey, "make the age key file readable (age-keygen -o FILE makes one)", "cannot read the age key: %v", errors.Unwrap(err))
		}
		p.ageKey = k
		p.AgeKeyFile, _ = filepath.Abs(opt.AgeKey)
	}
	out := opt.Out
	if out == "" {
		out = "out"
	}
	if p.Out, err = filepath.Abs(out); err != nil {
		return nil, errs.BadInput(out, "give a writable directory with --out", "%v", err)
	}
	if err := checkWritable(p.Out); err != nil {
		return nil, err
	}
	if p.Epoch, err = resolveEpoch(opt.Epoch, f); err != nil {
		return nil, err
	}
	p.InitramfsEpoch = MinEpoch
	return p, nil
}

// HasAgeKey reports whether the build embeds the age key.
func (p *Profile) HasAgeKey() bool { return p.ageKey != nil }

func (p *Profile) checkKernel(opt Options) error {
	kernel := opt.Kernel
	if kernel == "" {
		k, err := kernelpkg.Default()
		if err != nil {
			return errs.BadInput("kernel", "install one (apt-get install linux-image-amd64) or pass --kernel FILE --modules-dir DIR", "no installed kernel found: %v", err)
		}
		kernel = k.Image
	}
	abs, err := filepath.Abs(kernel)
	if err != nil {
		return errs.BadInput(kernel, "pass an x86_64 bzImage with --kernel", "%v", err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return errs.BadInput(kernel, "pass an existing, readable x86_64 bzImage with --kernel (Debian: /boot/vmlinuz-*)", "cannot open the kernel: %v", errors.Unwrap(err))
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return errs.BadInput(kernel, "pass a bzImage file with --kernel, not a directory", "not a regular file")
	}
	rel, _, err := image.KernelVersion(f)
	if err != nil {
		return errs.BadInput(kernel, "pass an x86_64 bzImage with --kernel (Debian: /boot/vmlinuz-*)", "not a kernel image: %v", err)
	}
	p.Kernel, p.KernelVersion = abs, rel
	mods := opt.ModulesDir
	if mods == "" {
		mods = filepath.Join("/lib/modules", rel)
	}
	if p.ModulesDir, err = filepath.Abs(mods); err != nil {
		return errs.BadInput(mods, "pass the kernel's modules directory with --modules-dir", "%v", err)
	}
	if _, err := os.Stat(filepath.Join(p.ModulesDir, "modules.dep")); err != nil {
		return errs.BadInput(mods, fmt.Sprintf("pass the modules directory of kernel %s (holding modules.dep) with --modules-dir", rel), "no modules.dep: %v", errors.Unwrap(err))
	}
	return nil
}

// checkWritable checks that dir (or its nearest existing parent) is a
// directory we can create files in, without leaving anything behind.
func checkWritable(dir string) error {
	fix := "choose a writable output directory with --out DIR"
	p := dir
	for {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return errs.BadInput(dir, fix, "%s is not a directory", p)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return errs.BadInput(dir, fix, "%v", errors.Unwrap(err))
		}
		parent := filepath.Dir(p)
		if parent == p {
			return errs.BadInput(dir, fix, "no existing parent directory")
		}
		p = parent
	}
	f, err := os.CreateTemp(p, ".nixlos-write-check-*")
	if err != nil {
		return errs.BadInput(dir, fix, "cannot write in %s: %v", p, errors.Unwrap(err))
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// resolveEpoch picks SOURCE_DATE_EPOCH: the explicit value, the environment,
// the flake's last git commit time, or 0; clamped to MinEpoch.
func resolveEpoch(explicit *int64, f *flake.Flake) (int64, error) {
	var e int64
	switch {
	case explicit != nil:
		e = *explicit
	case os.Getenv("SOURCE_DATE_EPOCH") != "":
		v, err := strconv.ParseInt(strings.TrimSpace(os.Getenv("SOURCE_DATE_EPOCH")), 10, 64)
		if err != nil {
			return 0, errs.BadInput("SOURCE_DATE_EPOCH="+os.Getenv("SOURCE_DATE_EPOCH"), "set it to a Unix time in seconds, or unset it", "not an integer")
		}
		e = v
	case f.IsGit():
		out, err := exec.Command("git", "-C", f.GitRoot, "log", "-1", "--format=%ct").Output()
		if err == nil {
			e, _ = strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		}
	}
	if e < MinEpoch {
		e = MinEpoch
	}
	return e, nil
}

// Result is what Build wrote.
type Result struct {
	Out       string            `json:"out"`
	Hosts     []string          `json:"hosts"`
	Epoch     int64             `json:"sourceDateEpoch"`
	AgeKey    bool              `json:"ageKeyEmbedded"`
	Skipped   []string          `json:"skippedHosts,omitempty"` // hosts without a disk layout
	Initramfs *initramfs.Report `json:"initramfs"`
	Outputs   []image.Output    `json:"outputs"`
	Steps     []StepTime        `json:"steps"`
	Manifest  *flake.Manifest   `json:"-"`
	Sums      string            `json:"sha256sums"`
	// Cache is the media's signed binary cache (Options.Closure): its
	// public key and per host the closure carried.
	Cache *CacheResult `json:"cache,omitempty"`
	// Inputs are the flake's inputs the media's cache carries.
	Inputs []flake.Input `json:"inputs,omitempty"`
}

// CacheResult is the closure step's outcome. The secret key is gone.
type CacheResult struct {
	PublicKey string                     `json:"publicKey"`
	Closures  map[string]closure.Summary `json:"closures"`
}

// StepTime is one named step and its duration in seconds.
type StepTime struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Job is the state the steps of one Build share (opaque: Build makes it).
type Job struct {
	ctx          context.Context
	p            *Profile
	w            io.Writer
	res          *Result
	m            *flake.Manifest
	manifestJSON []byte
	stage        string             // private staging directory inside p.Out
	nixCache     string             // the media's cache directory, "" for none
	cacheKey     *closure.SecretKey // signs the closures and the inputs
	initrd       string
}

// Steps is the plan of a build: its steps in order, each with its function.
func (p *Profile) Steps() step.List[*Job] {
	return step.List[*Job]{}.
		Append(StepPrepare, "export the manifest, copy the flake's tracked files", (*Job).prepare).
		AppendWhen(p.Closure, StepClosure, "build each host's system into a signed binary cache", (*Job).closure).
		Append(StepInputs, "carry the flake's locked inputs in the media's cache", (*Job).inputs).
		Append(StepInitramfs, "u-root + installer + tools + modules + flake + manifest", (*Job).initramfs).
		Append(StepImages, "write the media: "+strings.Join(formatNames(p.Formats), ", "), (*Job).images).
		Append(StepChecksums, "write SHA256SUMS", (*Job).checksums)
}

func formatNames(fs []image.Format) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// Build runs the steps of p, printing a line per step to w. Outputs are
// written into a private staging directory inside p.Out and moved into
// place only when all of them are complete.
func Build(ctx context.Context, p *Profile, w io.Writer) (*Result, error) {
	if w == nil {
		w = io.Discard
	}
	b := &Job{ctx: ctx, p: p, w: w, res: &Result{Out: p.Out, Epoch: p.Epoch, AgeKey: p.HasAgeKey()}}
	if p.HasAgeKey() {
		fmt.Fprintln(w, SecretWarning)
	}
	defer func() {
		if b.stage != "" {
			os.RemoveAll(b.stage)
		}
	}()
	steps := progress.New(w)
	err := p.Steps().Run(ctx, b, step.Hooks[*Job]{Each: func(s step.Step[*Job], run func() error) error {
		start := time.Now()
		err := steps.Run(s.Name, run)
		b.res.Steps = append(b.res.Steps, StepTime{Name: s.Name, Seconds: time.Since(start).Seconds()})
		return err
	}})
	if err != nil {
		return nil, err
	}
	return b.res, nil
}

func (b *Job) prepare() error {
	p, res, w := b.p, b.res, b.w
	m, skipped, err := p.manifest(b.ctx)
	if err != nil {
		return err
	}
	b.m, res.Skipped = m, skipped
	res.Manifest, res.Hosts = m, m.HostNames()
	if err := p.checkAgeKey(m, indent(w)); err != nil {
		return err
	}
	if b.manifestJSON, err = marshalManifest(m); err != nil {
		return err
	}
	// Nothing is written before this point.
	if err := os.MkdirAll(p.Out, 0o755); err != nil {
		return errs.BadInput(p.Out, "choose a writable output directory with --out DIR", "%v", err)
	}
	if b.stage, err = os.MkdirTemp(p.Out, ".build-"); err != nil { // 0700
		return errs.BadInput(p.Out, "choose a writable output directory with --out DIR", "%v", err)
	}
	if _, err := flake.Copy(b.ctx, p.Flake, filepath.Join(b.stage, "flake")); err != nil {
		return fmt.Errorf("copy flake: %w", err)
	}
	return nil
}

func (b *Job) closure() error {
	p, res, m, w := b.p, b.res, b.m, b.w
	b.nixCache = filepath.Join(b.stage, closure.CacheDir)
	var err error
	if b.cacheKey, err = closure.GenerateKey(""); err != nil {
		return err
	}
	c, err := closure.Build(b.ctx, closure.BuildOptions{
		FlakeRef: p.Flake.Ref(), Hosts: res.Hosts, Cache: b.nixCache, Nix: p.Nix.Path, Log: indent(w), Key: b.cacheKey,
	})
	if errors.Is(err, closure.ErrNoToplevel) {
		return errs.BadInput(p.Flake.Dir, "give each host a NixOS system (nixosConfigurations.HOST.config.system.build.toplevel), pick hosts with --host, or build without --closure", "%v", err)
	}
	if err != nil {
		return err
	}
	res.Cache = &CacheResult{PublicKey: c.PublicKey, Closures: c.Closures}
	m.Cache = &flake.Cache{PublicKey: c.PublicKey, Dir: closure.CacheDir}
	for _, h := range res.Hosts {
		s := c.Closures[h]
		host := m.Hosts[h]
		host.Toplevel = s.Toplevel
		m.Hosts[h] = host
		fmt.Fprintf(w, "  %s: %d paths, %.1f MiB (%.1f MiB on the media)\n", h, s.Paths, float64(s.NarSize)/(1<<20), float64(s.FileSize)/(1<<20))
	}
	fmt.Fprintf(w, "  signed with %s (the secret key is not kept)\n", c.PublicKey)
	b.manifestJSON, err = marshalManifest(m)
	return err
}

func (b *Job) inputs() error {
	in, err := b.p.carryInputs(b.ctx, filepath.Join(b.stage, closure.CacheDir), b.cacheKey, indent(b.w))
	if err != nil || len(in) == 0 {
		return err
	}
	b.res.Inputs, b.m.Inputs = in, in
	b.nixCache = filepath.Join(b.stage, closure.CacheDir)
	if b.m.Cache == nil {
		b.m.Cache = &flake.Cache{Dir: closure.CacheDir} // inputs only: unsigned
	}
	b.manifestJSON, err = marshalManifest(b.m)
	return err
}

func (b *Job) initramfs() error {
	p := b.p
	b.initrd = filepath.Join(b.stage, "initrd")
	spec := initramfs.Spec{
		Output: b.initrd, GoModuleDir: p.GoModuleDir, InstallerBinary: p.InstallerBin, Version: p.Version,
		KernelVersion: p.KernelVersion, ModulesDir: p.ModulesDir,
		FlakeDir: filepath.Join(b.stage, "flake"), Manifest: b.manifestJSON,
		SourceDateEpoch: p.InitramfsEpoch, CacheDir: p.CacheDir, NoCache: p.NoCache,
	}
	if p.ageKey != nil {
		spec.AgeKey = p.ageKey.File()
	}
	_, rep, err := initramfs.Build(b.ctx, spec, indent(b.w))
	if rep != nil {
		rep.Path = "" // a staging file, gone after the build; the media carry it
	}
	b.res.Initramfs = rep
	return err
}

func (b *Job) images() error {
	p, res, w := b.p, b.res, b.w
	imgDir := filepath.Join(b.stage, "out")
	spec := image.Spec{Kernel: p.Kernel, Initrd: b.initrd, Cmdline: p.Cmdline, Hosts: res.Hosts, Epoch: p.Epoch, NixCache: b.nixCache}
	if err := os.Mkdir(imgDir, 0o700); err != nil {
		return err
	}
	// The formats are independent files: build them concurrently.
	outs := make([]image.Output, len(p.Formats))
	failures := make([]error, len(p.Formats))
	var wg sync.WaitGroup
	for i, f := range p.Formats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], failures[i] = buildFormat(spec, imgDir, f)
		}()
	}
	wg.Wait()
	for i, f := range p.Formats {
		if failures[i] != nil {
			return fmt.Errorf("%s: %w", f, failures[i])
		}
		o := outs[i]
		fmt.Fprintf(w, "  %-4s %s (%.1f MiB) in %s\n", f, filepath.Base(o.Path), float64(o.Size)/(1<<20), o.Duration.Round(time.Millisecond))
		res.Outputs = append(res.Outputs, o)
	}
	if p.ageKey != nil {
		if err := restrict(imgDir); err != nil {
			return err
		}
	}
	// Move the complete outputs into place.
	for i, o := range res.Outputs {
		dst := filepath.Join(p.Out, filepath.Base(o.Path))
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if err := os.Rename(o.Path, dst); err != nil {
			return err
		}
		res.Outputs[i].Path = dst
	}
	return nil
}

func (b *Job) checksums() error {
	if err := image.WriteSums(b.p.Out); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(b.p.Out, image.SumsName))
	b.res.Sums = string(data)
	return err
}

// buildFormat writes one format into dir.
func buildFormat(spec image.Spec, dir string, f image.Format) (image.Output, error) {
	start := time.Now()
	out := image.Output{Format: f}
	var err error
	switch f {
	case image.FormatISO:
		out.Path = filepath.Join(dir, image.ISOName)
		out.Size, err = image.BuildISO(spec, out.Path)
	case image.FormatUSB:
		out.Path = filepath.Join(dir, image.USBName)
		out.Size, err = image.BuildUSB(spec, out.Path)
	case image.FormatPXE:
		out.Path = filepath.Join(dir, image.PXEDir)
		out.Size, err = image.BuildPXE(spec, out.Path)
	default:
		err = fmt.Errorf("unknown format %q", f)
	}
	out.Duration = time.Since(start)
	return out, err
}

// manifest exports the flake's manifest and keeps the selected hosts (or,
// without --host, every host that has a disk layout). With --host only the
// selected hosts are evaluated, so another host's error cannot stop the
// build; without --host a host that does not evaluate is an input error
// naming it (as mkiso hosts reports it): no host is dropped silently.
func (p *Profile) manifest(ctx context.Context) (*flake.Manifest, []string, error) {
	m, err := flake.Export(ctx, p.Flake, flake.Options{Nix: p.Nix, Hosts: p.Hosts})
	if err != nil {
		return nil, nil, err
	}
	if err := m.BrokenError(p.Flake.Dir); err != nil && len(p.Hosts) == 0 {
		return nil, nil, err
	}
	out := *m
	out.Hosts = map[string]flake.Host{}
	var skipped []string
	if len(p.Hosts) == 0 {
		for _, name := range m.HostNames() {
			if m.Hosts[name].HasLayout() {
				out.Hosts[name] = m.Hosts[name]
			} else {
				skipped = append(skipped, name)
			}
		}
		if len(out.Hosts) == 0 {
			return nil, nil, errs.BadInput(p.Flake.Dir, flake.NoLayoutFix, "no host has a disk layout")
		}
		return &out, skipped, nil
	}
	for _, name := range p.Hosts {
		h, err := m.Select(name)
		if err != nil {
			return nil, nil, err
		}
		out.Hosts[name] = h
	}
	return &out, nil, nil
}

// carryInputs fetches the flake's locked inputs into this machine's store
// (flake.Inputs) and copies them into the media's cache dir, signed with
// key (the closures' key) or, without --closure, unsigned: they are
// content-addressed, and Nix checks each against its hash, as the lock
// file's narHash pins it. Inputs that cannot be fetched here (an unlocked
// flake, a path: input missing on this machine, a github: input offline)
// are a warning saying what the installer will then lack; the build goes on.
func (p *Profile) carryInputs(ctx context.Context, cache string, key *closure.SecretKey, w io.Writer) ([]flake.Input, error) {
	in, err := flake.Inputs(ctx, p.Flake, p.Nix)
	switch {
	case errors.Is(err, flake.ErrNotLocked):
		fmt.Fprintf(w, "warning: the media do not carry the flake's inputs: %s has no up-to-date %s (fix: run 'nix flake lock' in %s and commit %s); the installer must fetch them, which needs the network and cannot work for path: inputs\n",
			p.Flake.Dir, flake.LockFile, p.Flake.Dir, flake.LockFile)
		return nil, nil
	case err != nil:
		fmt.Fprintf(w, "warning: the media do not carry the flake's inputs: nix could not fetch them here (%s); the installer must fetch them, which needs the network and cannot work for path: inputs that are not on the target\n", lastLine(err.Error()))
		return nil, nil
	case len(in) == 0:
		fmt.Fprintln(w, "the flake has no inputs")
		return nil, nil
	}
	paths := make([]string, len(in))
	for i, x := range in {
		paths[i] = x.StorePath
	}
	if err := closure.Copy(ctx, closure.BuildOptions{Cache: cache, Nix: p.Nix.Path, Log: io.Discard}, key, paths); err != nil {
		return nil, fmt.Errorf("carry the flake's inputs: %w", err)
	}
	for _, x := range in {
		fmt.Fprintf(w, "%s: %s (%s) → %s\n", x.Name, x.URL, x.NarHash, x.StorePath)
	}
	return in, nil
}

// lastLine is the last non-empty line of s (nix's error, without its trace).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "(use '--show-trace'") {
			return l
		}
	}
	return s
}

// checkAgeKey decrypts each selected host's sops file with the key to
// embed, in memory, as the installer's verify-key step will
// (agekey.Verify). A key that opens none of them is an input error naming
// each host, its file and the recipients the file is encrypted for; a
// host it cannot open beside others it can is a warning. Hosts without a
// sops file are not checked. Only the key's public half is printed.
func (p *Profile) checkAgeKey(m *flake.Manifest, w io.Writer) error {
	if p.ageKey == nil {
		return nil
	}
	var opened int
	var failed []string
	for _, name := range m.HostNames() {
		h := m.Hosts[name]
		if h.SopsFile == "" {
			continue
		}
		reason := p.verifySops(h.SopsFile)
		if reason == "" {
			opened++
			fmt.Fprintf(w, "age key %s opens %s (host %s)\n", p.ageKey.Recipient(), h.SopsFile, name)
			continue
		}
		failed = append(failed, fmt.Sprintf("host %s: %s: %s", name, h.SopsFile, reason))
	}
	switch {
	case len(failed) == 0 && opened == 0:
		fmt.Fprintf(w, "warning: no selected host has a sops file (sops.defaultSopsFile): the age key %s was not checked\n", p.ageKey.Recipient())
	case opened == 0:
		return errs.BadInput("--age-key "+p.AgeKeyFile,
			fmt.Sprintf("pass the age key of one of the recipients named above with --age-key, or re-encrypt the files for %s (add it to .sops.yaml, then sops updatekeys FILE)", p.ageKey.Recipient()),
			"age key %s decrypts none of the selected hosts' secrets:\n  %s\n", p.ageKey.Recipient(), strings.Join(failed, "\n  "))
	default:
		for _, f := range failed {
			fmt.Fprintf(w, "warning: the age key cannot decrypt the secrets of %s\n", f)
		}
	}
	return nil
}

// verifySops is why the age key does not open the flake's sops file rel
// ("" when it does): agekey.Verify's reason, which names the recipients
// the file is encrypted for.
func (p *Profile) verifySops(rel string) string {
	path := rel
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.Flake.Dir, filepath.FromSlash(rel))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("cannot read it: %v", errors.Unwrap(err))
	}
	_, err = agekey.Verify(p.ageKey, data, rel)
	var ie *errs.InputError
	if errors.As(err, &ie) {
		return ie.Err.Error()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// restrict makes every file under dir 0600 and every directory 0700: the
// outputs hold the age key.
func restrict(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		mode := fs.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		}
		return os.Chmod(path, mode)
	})
}

func indent(w io.Writer) io.Writer { return fsutil.NewPrefixWriter(w, "  ") }

// marshalManifest is the manifest as embedded at /etc/nixlos/manifest.json.
func marshalManifest(m *flake.Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return append(b, '\n'), nil
}
