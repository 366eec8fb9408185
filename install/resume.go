package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
)

// stateFallback is where the state goes when /var/lib is on no disk
// filesystem of the layout (a tmpfs root): on the filesystem of /nix.
const stateFallback = "/nix/var/nixlos/install-state.json"

// statePlace is the layout's mount that holds the state file and the
// file's path inside Root: StateFile on the disk filesystem that holds
// /var/lib, else stateFallback; ok is false when neither is on a disk.
func statePlace(lp *partition.Plan) (m *partition.MountPlan, path string, ok bool) {
	for _, path := range []string{StateFile, stateFallback} {
		var best *partition.MountPlan
		for _, mt := range lp.Mounts {
			mp := mt.Mountpoint
			if mp == "/" || path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
				if best == nil || len(mp) > len(best.Mountpoint) {
					best = mt
				}
			}
		}
		if best != nil && strings.HasPrefix(best.Device, "/dev/") {
			return best, path, true
		}
	}
	return nil, "", false
}

// Probe looks on the target disks for the state of an interrupted install
// before anything is written: it opens the layout as it would be after a
// reboot (md assembled, LUKS opened with the keys the plan provides, LVM
// activated: apply.Session.Open), mounts the filesystem that holds the
// state file read-only in a temporary directory, reads the state, and
// undoes all of it. (A read-only mount still replays an ext4 or btrfs
// journal, as any mount would.) A layout that is not on the disks, or a
// LUKS container whose passphrase is typed at a terminal, gives no state
// and says why in note. p must have passed apply.Session.Preflight.
func Probe(ctx context.Context, p *Plan, opt Options, log io.Writer) (st *State, note string, err error) {
	if log == nil {
		log = io.Discard
	}
	m, path, ok := statePlace(p.Layout)
	if !ok {
		return nil, "the layout keeps no install state: /var/lib and /nix are on no disk filesystem", nil
	}
	for _, l := range p.Layout.LUKS {
		if l.AskPassword {
			return nil, "the interrupted install is not looked for: LUKS " + l.Name + " asks for its passphrase", nil
		}
	}
	for _, k := range p.LUKSKeys {
		if k.Source == KeyPrompt {
			return nil, "the interrupted install is not looked for: the passphrase of LUKS " + k.Name + " is typed at the terminal", nil
		}
	}
	r := &runner{ctx: ctx, p: p, opt: opt, log: &redactor{w: log}}
	defer r.removeKeyFiles()
	if len(p.LUKSKeys) > 0 && p.SopsFile != "" && opt.Key != nil {
		if err := r.verifyKey(); err != nil {
			return nil, "", err
		}
	}
	if err := r.writeLUKSKeys(); err != nil {
		return nil, "", err
	}
	sess := &apply.Session{Plan: p.Layout, Root: p.Root, Log: r.log}
	defer func() {
		if cerr := sess.Close(); cerr != nil {
			fmt.Fprintf(r.log, "probe: close: %v (ignored)\n", cerr)
		}
	}()
	if err := sess.Open(); err != nil {
		fmt.Fprintf(r.log, "probe: %v\n", err)
		return nil, "no layout of this plan on the target disks", nil
	}
	dir, err := os.MkdirTemp("", "nixlos-probe-")
	if err != nil {
		return nil, "", err
	}
	defer os.Remove(dir)
	if m.FSType == "btrfs" {
		exec.Command("btrfs", "device", "scan").Run()
	}
	ro := &partition.MountPlan{Mountpoint: "/", Device: m.Device, FSType: m.FSType, Options: append(append([]string{}, m.Options...), "ro")}
	mnt := &apply.Mounter{Root: dir, Resolve: sess.Resolve}
	if err := mnt.Mount(&partition.Plan{Mounts: []*partition.MountPlan{ro}}); err != nil {
		fmt.Fprintf(r.log, "probe: %v\n", err)
		return nil, "the filesystem of " + m.Mountpoint + " does not mount", nil
	}
	defer func() {
		if uerr := unix.Unmount(dir, 0); uerr != nil {
			fmt.Fprintf(r.log, "probe: unmount %s: %v\n", dir, uerr)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	}()
	rel := strings.TrimPrefix(path, strings.TrimSuffix(m.Mountpoint, "/"))
	st, err = readStateFile(filepath.Join(dir, rel))
	if err != nil {
		return nil, fmt.Sprintf("the state on the target is unreadable (%v): starting over", err), nil
	}
	if st == nil {
		return nil, "no interrupted install on the target disks", nil
	}
	return st, "", nil
}

// Decide probes the target disks and, unless restart, makes p continue an
// interrupted install of the same plan (SetResume). It returns the line
// to show: "resume: continuing after step X …", or why the install starts
// over. A probe that fails is not an error: the install starts over. The
// probe's tool output goes to the install log's path + ".probe".
func Decide(ctx context.Context, p *Plan, opt Options, restart bool) string {
	logFile := opt.LogFile
	if logFile == "" {
		logFile = DefaultLogFile
	}
	var log io.Writer = io.Discard
	if f, err := os.OpenFile(logFile+".probe", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640); err == nil {
		defer f.Close()
		log = f
	}
	st, note, err := Probe(ctx, p, opt, log)
	p.Decision = p.decideResume(st, note, err, restart)
	return p.Decision
}

// decideResume turns a probe's result into the resume decision.
func (p *Plan) decideResume(st *State, note string, err error, restart bool) string {
	switch {
	case err != nil:
		return fmt.Sprintf("resume: none (looking for an interrupted install failed: %v); starting over", err)
	case st == nil:
		return "resume: none (" + note + ")"
	}
	ok, why := p.CanResume(st)
	switch {
	case !ok:
		return "resume: none (" + why + ")"
	case restart:
		return fmt.Sprintf("resume: none (--restart: the interrupted install, done up to %s, starts over)", st.Last())
	}
	p.SetResume(st)
	return p.ResumeLine()
}

// The boot path invariant (see the package doc): disarm removes every way
// a firmware could boot the target before the system on it is complete.

// wipeBootCode zeroes the boot code (the first 440 bytes) of every target
// disk's MBR, leaving its disk signature and partition entries alone:
// BIOS firmware then finds nothing to run on the disk.
func wipeBootCode(p *Plan, log io.Writer) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(p.Disks)) {
		dev := p.Disks[k]
		if err := zeroBootCode(dev); err != nil {
			errs = append(errs, fmt.Errorf("wipe the MBR boot code of %s: %w", dev, err))
			continue
		}
		fmt.Fprintf(log, "boot path: MBR boot code of %s wiped\n", dev)
	}
	return errors.Join(errs...)
}

func zeroBootCode(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	code := make([]byte, 440)
	if _, err := f.ReadAt(code, 0); err != nil {
		f.Close()
		return err
	}
	if allZero(code) {
		return f.Close()
	}
	if _, err := f.WriteAt(make([]byte, 440), 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// espBootFiles are the files of a mounted ESP that lead a UEFI firmware
// (its removable-media path) or a boot manager into a system: the fallback
// loaders, systemd-boot's loader.conf and entries.
func espBootFiles(esp string) []string {
	var out []string
	for _, pat := range []string{"EFI/BOOT/BOOT*.EFI", "loader/loader.conf", "loader/entries/*.conf"} {
		out = append(out, foldGlob(esp, pat)...)
	}
	return out
}

// foldGlob matches pat under dir without regard to case (FAT).
func foldGlob(dir, pat string) []string {
	parts := strings.Split(pat, "/")
	cur := []string{dir}
	for _, part := range parts {
		var next []string
		for _, d := range cur {
			ents, err := os.ReadDir(d)
			if err != nil {
				continue
			}
			for _, e := range ents {
				if ok, _ := filepath.Match(strings.ToLower(part), strings.ToLower(e.Name())); ok {
					next = append(next, filepath.Join(d, e.Name()))
				}
			}
		}
		cur = next
	}
	return cur
}

// disarm removes the target's ways in while Root is mounted: the MBR boot
// code of every target disk, the fallback loaders and boot entries of the
// layout's ESPs and GRUB's grub.cfg. What remains of a boot loader then
// boots nothing. Only files of the layout's boot filesystems and the MBR
// boot code are touched, never a data volume.
func (r *runner) disarm() error {
	errs := []error{wipeBootCode(r.p, r.log)}
	c := r.p.bootCheck("", false)
	var files []string
	for _, esp := range c.ESPs {
		files = append(files, espBootFiles(filepath.Join(r.p.Root, esp))...)
	}
	files = append(files, filepath.Join(r.p.Root, "boot/grub/grub.cfg"))
	for _, f := range files {
		if err := os.Remove(f); errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(r.log, "boot path: removed %s\n", f)
	}
	unix.Sync()
	return errors.Join(errs...)
}

// initState starts the record of this run: the interrupted install's when
// resuming, else an empty one.
func (r *runner) initState() {
	r.state = &State{Version: stateVersion, PlanHash: r.p.Hash, Host: r.p.Host}
	if rs := r.p.Resume; rs != nil && rs.State != nil {
		r.state.Completed = slices.Clone(rs.State.Completed)
		r.state.System = rs.State.System
		r.res.System = rs.State.System
	}
	if _, path, ok := statePlace(r.p.Layout); ok {
		r.statePath = filepath.Join(r.p.Root, path)
	}
}

// record adds a completed step to the state and writes it to the target
// once the target is mounted (the steps before partition are written with
// it).
func (r *runner) record(step string) error {
	if !r.state.Done(step) {
		r.state.Completed = append(r.state.Completed, step)
	}
	if step == StepBuild || step == StepCopy {
		r.state.System = r.res.System
	}
	if !r.mounted || r.stateGone || r.statePath == "" {
		return nil
	}
	// What the step wrote reaches the disks before the state says it is
	// done: a copied store path is registered (fsync'd) by Nix, but its
	// files are not synced.
	unix.Sync()
	return writeStateFile(r.statePath, r.state)
}

// invalidateStore makes every store path in Root's Nix store invalid
// before a resumed build or closure copy runs again: the interrupted one
// may have registered paths whose files a power cut then lost (Nix syncs
// its database, not the files). Nix deletes and writes again an invalid
// path it needs.
func (r *runner) invalidateStore() error {
	if r.p.Resume == nil {
		return nil
	}
	db := filepath.Join(r.p.Root, "nix/var/nix/db")
	if !fileExists(db) {
		return nil
	}
	if err := os.RemoveAll(db); err != nil {
		return fmt.Errorf("the interrupted install's Nix database: %w", err)
	}
	fmt.Fprintf(r.log, "resume: removed %s: the store paths the interrupted install copied are copied again\n", db)
	return nil
}

// forget drops step and every later one from the state and writes it.
func (r *runner) forget(step string) {
	if i := slices.Index(r.state.Completed, step); i >= 0 {
		r.state.Completed = r.state.Completed[:i]
	}
	if r.stateGone || r.statePath == "" {
		return
	}
	if err := writeStateFile(r.statePath, r.state); err != nil {
		fmt.Fprintf(r.log, "cleanup: %v\n", err)
	}
}

// removeState removes the state file: the install is complete.
func (r *runner) removeState() error {
	r.stateGone = true
	if r.statePath == "" {
		return nil
	}
	if err := os.Remove(r.statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("install state: %w", err)
	}
	dir := filepath.Dir(r.statePath)
	if err := syncDir(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("install state: %w", err)
	}
	os.Remove(dir) // when empty
	return nil
}

// partition lays the disks out and mounts the layout, so that the state
// can record it at once. The MBR boot code is wiped first (the new tables
// keep it), and what a kept boot filesystem holds of ways in is removed
// after: nothing boots the disks until the boot loader step. On a
// resume it reopens and mounts what the interrupted install made, and
// removes any way in an interrupted boot loader step left.
func (r *runner) partition() error {
	if r.p.Resume != nil {
		r.touched = true
		if err := r.sess.Open(); err != nil {
			return fmt.Errorf("reopen the interrupted install's devices: %w", err)
		}
		r.mounted = true
		if err := r.sess.Mount(); err != nil {
			return err
		}
		if r.state.Done(StepBootloader) {
			return nil
		}
		return r.disarm()
	}
	if err := r.sess.Preflight(); err != nil {
		return err
	}
	// Kept volumes are opened and planned against before anything is
	// written: a refusal leaves the disks untouched.
	if err := r.verifyKept(); err != nil {
		return err
	}
	r.touched = true
	if err := wipeBootCode(r.p, r.log); err != nil {
		return err
	}
	if err := r.sess.Apply(); err != nil {
		return err
	}
	r.mounted = true
	if err := r.sess.Mount(); err != nil {
		return err
	}
	return r.disarm() // a boot filesystem the layout kept may hold old ways in
}

// copyFlake copies the flake to Root/etc/nixos, replacing what an
// interrupted copy left there.
func (r *runner) copyFlake() error {
	dst := filepath.Join(r.p.Root, TargetFlake)
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return copyTree(r.p.FlakeDir, dst)
}

// echoLines passes everything to w and the complete lines that start with
// prefix (and do not contain skip, when set) to console, with prefix
// replaced by as (and secrets redacted).
type echoLines struct {
	w, console io.Writer
	prefix, as string
	skip       string
	redact     func(string) string
	cur        []byte
}

func (e *echoLines) Write(p []byte) (int, error) {
	if e.console != nil {
		for _, b := range p {
			if b != '\n' {
				if len(e.cur) < 400 {
					e.cur = append(e.cur, b)
				}
				continue
			}
			l, ok := strings.CutPrefix(strings.TrimSpace(string(e.cur)), e.prefix)
			if ok && l != "" && (e.skip == "" || !strings.Contains(l, e.skip)) {
				fmt.Fprintln(e.console, e.as+e.redact(l))
			}
			e.cur = e.cur[:0]
		}
	}
	return e.w.Write(p)
}
