package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/fsutil"
	"github.com/nixlos/nixlos/internal/progress"
	"github.com/nixlos/nixlos/internal/step"
	"github.com/nixlos/nixlos/partition/apply"
)

// Result says what Run did.
type Result struct {
	System     string // the built system's store path (/nix/store/…)
	LogFile    string // the live-system log
	Bootloader string // what the bootloader step did, or why it was skipped
	BootCheck  string // what the boot check found
}

// runner carries one Run.
type runner struct {
	ctx     context.Context
	target  *target // the entered target, between activate and bootloader
	p       *Plan
	opt     Options
	log     *redactor
	sess    *apply.Session
	created []string // key files written by luks-keys
	touched bool     // the partition step started
	mounted bool
	sops    []byte
	res     Result
	out     io.Writer // the console and the log
	console io.Writer // the console alone

	state     *State // what is recorded on the target
	statePath string // the state file under Root; "" when the layout keeps none
	stateGone bool   // write-log removed it: the install is complete
	bootWrite bool   // the bootloader step started in this run
}

// Run executes the plan. Progress lines ("[step] done in 1.2s") go to
// console and the log; tool output goes to the log only (opt.LogFile,
// default DefaultLogFile), which is copied to Root/var/log at the end. On
// failure after the disks were mounted it unmounts and closes what it can;
// the error names the failed step.
func Run(ctx context.Context, p *Plan, opt Options, console io.Writer) (Result, error) {
	if console == nil {
		console = io.Discard
	}
	r := &runner{ctx: ctx, p: p, opt: opt}
	r.res.LogFile = opt.LogFile
	if r.res.LogFile == "" {
		r.res.LogFile = DefaultLogFile
	}
	if err := os.MkdirAll(filepath.Dir(r.res.LogFile), 0o755); err != nil {
		return r.res, fmt.Errorf("install log: %w", err)
	}
	lf, err := os.OpenFile(r.res.LogFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return r.res, fmt.Errorf("install log: %w", err)
	}
	defer lf.Close()
	r.log = &redactor{w: lf}
	if opt.Key != nil {
		for _, l := range strings.Split(string(opt.Key.File()), "\n") {
			if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
				r.log.add([]byte(l))
			}
		}
	}
	pw := opt.Password
	if pw != nil {
		pw = func(name, device string) ([]byte, error) {
			b, err := opt.Password(name, device)
			if err == nil {
				r.log.add(b)
			}
			return b, err
		}
	}
	r.console = console
	r.sess = &apply.Session{Plan: p.Layout, Root: p.Root, Log: &echoLines{w: r.log, console: console, prefix: "nixlos: ", as: "  partition: ", skip: "(continuing", redact: r.log.redact}, Password: pw}
	defer r.removeKeyFiles()
	r.initState()

	fmt.Fprintf(r.log, "nixlos install: host %s, flake %s, root %s\n", p.Host, p.FlakeDir, p.Root)
	steps := &progress.Steps{W: io.MultiWriter(console, r.log)}
	r.out = steps.W
	if l := p.ResumeLine(); l != "" {
		fmt.Fprintln(r.log, l)
	}
	err = p.Steps.Run(ctx, r, step.Hooks[*runner]{
		Skipped: func(s Step) { fmt.Fprintf(steps.W, "[%s] skipped: %s\n", s.Name, s.Skip) },
		Each: func(s Step, run func() error) error {
			return steps.Run(s.Name, func() error { // recorded on the target before the step's done line
				if err := run(); err != nil {
					return err
				}
				return r.record(s.Name)
			})
		},
	})
	if err != nil {
		fmt.Fprintf(r.log, "error: %v\n", err)
		r.cleanup()
		var bc *BootCheckError
		if errors.As(err, &bc) {
			return r.res, bc // "boot check: …" needs no step name
		}
		return r.res, err
	}
	r.leave()
	fmt.Fprintf(r.log, "nixlos install: complete in %s\n", steps.Total().Round(1e8))
	return r.res, nil
}

// mount mounts the layout under Root in mount order.
func (r *runner) mount() error {
	r.mounted = true
	return r.sess.Mount()
}

func (r *runner) verifyKey() error {
	data, res, err := r.p.verifyKey(r.opt.Key)
	if err != nil {
		return err
	}
	r.sops = data
	fmt.Fprintf(r.log, "age key %s opens %s (%s, %d values)\n", res.Recipient, r.p.HostInfo.SopsFile, res.Checked, res.Values)
	return nil
}

// VerifyKey is the verify-key step alone: it reads the host's sops file
// and proves key decrypts it, in memory. It opens no disk and writes
// nothing, so `installer install --dry-run` runs it. A key that does not
// open the file is an input error (exit 2) naming the file's recipients.
// A host without a sops file has nothing to check: a zero Result.
func (p *Plan) VerifyKey(key *agekey.Key) (agekey.Result, error) {
	if p.SopsFile == "" || key == nil {
		return agekey.Result{}, nil
	}
	_, res, err := p.verifyKey(key)
	return res, err
}

// verifyKey reads the sops file and verifies key against it.
func (p *Plan) verifyKey(key *agekey.Key) ([]byte, agekey.Result, error) {
	data, err := os.ReadFile(p.SopsFile)
	if err != nil {
		return nil, agekey.Result{}, fmt.Errorf("sops file: %w", err)
	}
	res, err := agekey.Verify(key, data, p.HostInfo.SopsFile)
	return data, res, err
}

func (r *runner) luksKeys() error {
	if err := r.writeLUKSKeys(); err != nil {
		return err
	}
	if afterLUKS != nil {
		afterLUKS()
	}
	return nil
}

// writeLUKSKeys provides the layout's LUKS key files (the policy of the
// package doc); Run removes the ones it wrote when it ends.
func (r *runner) writeLUKSKeys() error {
	for _, k := range r.p.LUKSKeys {
		var pass []byte
		switch k.Source {
		case KeyExisting:
			fmt.Fprintf(r.log, "luks %s: using the existing %s\n", k.Name, k.Path)
			continue
		case KeySops:
			if r.sops == nil {
				return fmt.Errorf("luks %s: the sops file was not verified", k.Name)
			}
			v, err := agekey.Value(r.opt.Key, r.sops, r.p.HostInfo.SopsFile, k.SopsPath)
			if err != nil {
				return fmt.Errorf("luks %s: %w", k.Name, err)
			}
			pass = v
		case KeyPrompt:
			if r.opt.Password == nil {
				return fmt.Errorf("luks %s: a passphrase is needed but there is no terminal", k.Name)
			}
			v, err := r.opt.Password(k.Name, k.Path)
			if err != nil {
				return fmt.Errorf("luks %s: %w", k.Name, err)
			}
			pass = v
		}
		r.log.add(pass)
		if fileExists(k.Path) { // an earlier entry of the same container wrote it
			continue
		}
		if err := writeKeyFile(k.Path, pass); err != nil {
			return fmt.Errorf("luks %s: key file: %w", k.Name, err)
		}
		r.created = append(r.created, k.Path)
		fmt.Fprintf(r.log, "luks %s: wrote %s (0600) from %s\n", k.Name, k.Path, sourceText(k))
	}
	return nil
}

// afterLUKS, when set (tests), runs after the luks-keys step.
var afterLUKS func()

func (r *runner) removeKeyFiles() {
	for _, p := range r.created {
		os.Remove(p)
	}
	r.created = nil
}

func (r *runner) installKey() error {
	kf := r.p.HostInfo.AgeKeyFile
	if kf == "" {
		kf = flake.DefaultAgeKeyFile
	}
	path, err := agekey.Install(r.p.Root, kf, r.opt.Key)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.log, "age key %s installed at %s (0600)\n", r.opt.Key.Recipient(), path)
	return nil
}

// NixArgs is the nix build command line of the build step (without the
// binary). With store "" it builds in the default store (/nix, which the
// build step then binds to Root/nix); otherwise in --store store.
func (p *Plan) NixArgs(offline bool, store string) []string {
	args := []string{"--extra-experimental-features", "nix-command flakes", "build"}
	if store != "" {
		args = append(args, "--store", store)
	}
	args = append(args, "--no-link", "--json", "--print-build-logs",
		"--option", "build-users-group", "", "--option", "sandbox", "false")
	if offline {
		args = append(args, "--option", "substituters", "")
	}
	return append(args, "path:"+filepath.Join(p.Root, TargetFlake)+"#"+p.Attribute)
}

func (r *runner) build() error {
	if err := r.invalidateStore(); err != nil {
		return err
	}
	nix := r.opt.Nix
	if nix == "" {
		nix = "nix"
	}
	// With --store ROOT the store's real path differs from /nix/store and
	// Nix builds in a chroot, which pivot_root refuses on an initramfs
	// root. When this system has no /nix of its own (the installer image),
	// bind ROOT/nix to /nix and build in the default store instead: the
	// same store paths land in ROOT/nix/store, without a chroot.
	if r.opt.CopyInputs != nil {
		if err := r.opt.CopyInputs(r.ctx, r.p.Root, r.log); err != nil {
			return err
		}
	}
	store := r.p.Root
	if !fileExists("/nix") {
		target := filepath.Join(r.p.Root, "nix")
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := os.Mkdir("/nix", 0o755); err != nil {
			return fmt.Errorf("nix build: %w", err)
		}
		defer os.Remove("/nix")
		if err := unix.Mount(target, "/nix", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("nix build: bind %s to /nix: %w", target, err)
		}
		defer unix.Unmount("/nix", unix.MNT_DETACH)
		fmt.Fprintf(r.log, "bound %s to /nix (no /nix on this system)\n", target)
		store = ""
	}
	args := r.p.NixArgs(r.opt.Offline, store)
	if hook, err := buildHook(nix); err != nil {
		return fmt.Errorf("nix build: %w", err)
	} else if hook != "" {
		defer os.RemoveAll(filepath.Dir(hook))
		args = append([]string{"--option", "build-hook", hook}, args...)
	}
	fmt.Fprintf(r.log, "$ %s %s\n", nix, strings.Join(quoteAll(args), " "))
	cmd := exec.Command(nix, args...)
	cmd.Env = os.Environ()
	if os.Getenv("HOME") == "" || !fileExists(os.Getenv("HOME")) {
		cmd.Env = append(cmd.Env, "HOME=/tmp")
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = r.log
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("nix build: %w (install Nix: apt-get install nix-bin)", err)
		}
		return fmt.Errorf("nix build %s: %w (see the log)", r.p.Attribute, err)
	}
	var out []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out) != 1 || out[0].Outputs["out"] == "" {
		return fmt.Errorf("nix build: unexpected output %q", stdout.String())
	}
	sys := out[0].Outputs["out"]
	if _, err := os.Stat(filepath.Join(r.p.Root, sys)); err != nil {
		return fmt.Errorf("nix build: %s is not in %s: %w", sys, r.p.Root, err)
	}
	r.res.System = sys
	fmt.Fprintf(r.log, "system: %s\n", sys)
	return nil
}

// defaultBuildHook is where Debian's nix-bin has its build hook.
var defaultBuildHook = "/usr/libexec/nix/build-remote"

// buildHook gives Nix a build hook when its default one is missing (the
// installer image carries nix but not libexec/nix/build-remote, and Nix
// 2.8 runs the hook even without remote builders): build-remote is the
// nix binary under that name. It returns "" when the default exists.
func buildHook(nix string) (string, error) {
	if fileExists(defaultBuildHook) {
		return "", nil
	}
	bin, err := exec.LookPath(nix)
	if err != nil {
		return "", err
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "nixlos-nix-hook-")
	if err != nil {
		return "", err
	}
	hook := filepath.Join(dir, "build-remote")
	if err := os.Symlink(bin, hook); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return hook, nil
}

func quoteAll(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"#") {
			q[i] = "'" + a + "'"
		} else {
			q[i] = a
		}
	}
	return q
}

// profile points the system profile at the built system, as nix-env
// --set does: system → system-1-link → the store path.
func (r *runner) profile() error {
	dir := filepath.Join(r.p.Root, "nix/var/nix/profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gen := filepath.Join(dir, "system-1-link")
	link := filepath.Join(dir, "system")
	for _, l := range []struct{ path, target string }{{gen, r.res.System}, {link, "system-1-link"}} {
		os.Remove(l.path)
		if err := os.Symlink(l.target, l.path); err != nil {
			return err
		}
	}
	fmt.Fprintf(r.log, "profile: %s -> system-1-link -> %s\n", link, r.res.System)
	return nil
}

// copyClosure puts the prebuilt Options.System into Root's store.
func (r *runner) copyClosure() error {
	if err := r.invalidateStore(); err != nil {
		return err
	}
	sys := r.p.System
	if r.opt.CopySystem != nil {
		if err := r.opt.CopySystem(r.ctx, r.p.Root, sys, r.log); err != nil {
			return fmt.Errorf("copy %s: %w", sys, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(r.p.Root, sys)); err != nil {
		return fmt.Errorf("%s is not in %s/nix/store: %w", sys, r.p.Root, err)
	}
	r.res.System = sys
	fmt.Fprintf(r.log, "system: %s\n", sys)
	return nil
}

// enterEnv is the environment of the commands run in the target, as
// nixos-enter gives them (plus extra).
func (r *runner) enterEnv(extra ...string) []string {
	sys := r.res.System
	env := []string{
		"PATH=" + sys + "/sw/bin:/run/current-system/sw/bin:/run/wrappers/bin:/nix/var/nix/profiles/system/sw/bin:/bin:/usr/bin:/sbin:/usr/sbin",
		"HOME=/root", "USER=root", "LOGNAME=root",
		"LOCALE_ARCHIVE=" + sys + "/sw/lib/locale/locale-archive",
		"IN_NIXOS_ENTER=1",
	}
	if t := os.Getenv("TERM"); t != "" {
		env = append(env, "TERM="+t)
	}
	return append(env, extra...)
}

// activate marks Root as NixOS, enters it and runs the system's
// activation, as nixos-install and nixos-enter do.
func (r *runner) activate() error {
	root, sys := r.p.Root, r.res.System
	if sys == "" {
		return errors.New("no system was built or copied")
	}
	// nixos-install: mark the target as a NixOS installation, otherwise
	// switch-to-configuration will chicken out; GRUB needs an mtab.
	if err := ensureDir(filepath.Join(root, "etc"), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(root, "etc/NIXOS"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	mtab := filepath.Join(root, "etc/mtab")
	os.Remove(mtab)
	if err := os.Symlink("/proc/mounts", mtab); err != nil {
		return err
	}
	if err := ensureDir(filepath.Join(root, "tmp"), os.ModeSticky|0o777); err != nil {
		return err
	}
	if err := ensureDir(filepath.Join(root, "root"), 0o700); err != nil {
		return err
	}
	fmt.Fprintf(r.log, "activate: created %s/etc/NIXOS, %s -> /proc/mounts\n", root, mtab)

	aliases := r.deviceAliases()
	if r.target, err = enterTarget(root, r.log, aliasNodes(aliases)...); err != nil {
		return err
	}
	if err := r.target.setup(aliases); err != nil {
		return err
	}
	act := sys + "/activate"
	var why string
	if _, err := resolveIn(root, act); err != nil {
		why = "the system has no activate"
		fmt.Fprintf(r.log, "activate: %s: %v\n", why, err)
	} else {
		tail := &tailWriter{w: r.log}
		if err := r.target.run(r.ctx, r.enterEnv(), tail, act); r.ctx.Err() != nil {
			return r.ctx.Err()
		} else if err != nil {
			why = fmt.Sprintf("%s: %v", act, err)
			if l := tail.Last(); l != "" {
				why += fmt.Sprintf("; last output: %q", r.log.redact(l))
			}
			// nixos-enter: "$system/activate 1>&2 || true"
			fmt.Fprintf(r.log, "activate: %s (going on, as nixos-enter does)\n", why)
		}
	}
	// nixos-enter creates /tmp and the like this way, errors hidden.
	if tmpfiles := sys + "/sw/bin/systemd-tmpfiles"; fileExistsIn(root, tmpfiles) {
		if err := r.target.run(r.ctx, r.enterEnv(), io.Discard, tmpfiles, "--create", "--remove", "-E"); err != nil {
			fmt.Fprintf(r.log, "activate: systemd-tmpfiles: %v (ignored)\n", err)
		}
	}
	if !fileExistsIn(root, "/bin/sh") {
		if why == "" {
			why = act + " ran but did not create it"
		}
		return fmt.Errorf("%s has no /bin/sh after the activation (%s)", root, why)
	}
	return nil
}

// bootloader runs the system's switch-to-configuration boot in the
// target, as nixos-install does, then leaves the target.
func (r *runner) bootloader() error {
	defer r.leave()
	r.bootWrite = true
	root, sys := r.p.Root, r.res.System
	if !fileExistsIn(root, sys+"/kernel") {
		r.res.Bootloader = "skipped: the system has no kernel (" + sys + "/kernel), so there is nothing to boot; the boot check will refuse it"
		fmt.Fprintln(r.log, "bootloader "+r.res.Bootloader)
		return nil
	}
	stc := sys + "/bin/switch-to-configuration"
	host, err := resolveIn(root, stc)
	if err != nil {
		return fmt.Errorf("the system has a kernel but no bin/switch-to-configuration (%s): no boot loader can be installed", stc)
	}
	if fi, err := os.Stat(host); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file: no boot loader can be installed", stc)
	}
	if r.target == nil {
		aliases := r.deviceAliases()
		if r.target, err = enterTarget(root, r.log, aliasNodes(aliases)...); err != nil {
			return err
		}
		if err := r.target.setup(aliases); err != nil {
			return err
		}
	}
	undo, err := r.target.bindRoot()
	if err != nil {
		return err
	}
	defer undo()
	tail := &tailWriter{w: &echoLines{w: r.log, console: r.console, as: "  bootloader: ", redact: r.log.redact}}
	if err := r.target.run(r.ctx, r.enterEnv("NIXOS_INSTALL_BOOTLOADER=1"), tail, stc, "boot"); err != nil {
		msg := fmt.Sprintf("%s boot: %v", stc, err)
		if l := tail.Last(); l != "" {
			msg += fmt.Sprintf("; last output: %q", r.log.redact(l))
		}
		return errors.New(msg + " (see the log)")
	}
	r.res.Bootloader = "installed by " + stc + " boot"
	fmt.Fprintln(r.log, "bootloader "+r.res.Bootloader)
	return nil
}

// deviceAliases pairs the layout's disk and partition paths (as the
// system's configuration names them) with the nodes this install wrote.
func (r *runner) deviceAliases() [][2]string {
	var out [][2]string
	add := func(path, node string) {
		if node != "" && node != path && fileExists(node) {
			out = append(out, [2]string{path, node})
		}
	}
	lp := r.p.Layout
	for _, k := range slices.Sorted(maps.Keys(lp.Disks)) {
		d := lp.Disks[k]
		add(d.LayoutDevice, d.Device)
		for _, pp := range d.Partitions {
			add(pp.Device, r.sess.Resolve(pp.Device))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(lp.Mdadm)) {
		for _, pp := range lp.Mdadm[k].Partitions {
			add(pp.Device, r.sess.Resolve(pp.Device))
		}
	}
	return out
}

func aliasNodes(aliases [][2]string) []string {
	var nodes []string
	for _, a := range aliases {
		nodes = append(nodes, a[1])
	}
	return nodes
}

// leave unmounts what was mounted into the target, in reverse, and ends
// its namespace.
func (r *runner) leave() {
	if r.target == nil {
		return
	}
	if err := r.target.close(); err != nil {
		fmt.Fprintf(r.log, "leave the target: %v\n", err)
	}
	r.target = nil
}

// bootCheck runs CheckBoot on the installed tree.
func (r *runner) bootCheck() error {
	unix.Sync()
	c := r.p.bootCheck(r.res.System, r.opt.Key != nil)
	if bootCheckLookup != nil {
		c.Lookup = bootCheckLookup
	}
	sum, err := CheckBoot(c)
	if err != nil {
		return err
	}
	r.res.BootCheck = sum
	fmt.Fprintln(r.log, "boot check: "+sum)
	return nil
}

// bootCheckLookup, when set (tests), replaces the boot check's device
// lookup.
var bootCheckLookup func(tag, value string) bool

// ensureDir creates dir with mode when it is missing (a mode with the
// sticky bit needs the chmod: Mkdir honours the umask).
func ensureDir(dir string, mode os.FileMode) error {
	if fileExists(dir) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// fileExistsIn reports whether path exists inside root, symlinks followed
// as in a chroot.
func fileExistsIn(root, path string) bool {
	_, err := resolveIn(root, path)
	return err == nil
}

// resolveIn resolves path as a process chrooted to root would, following
// symlinks (absolute ones relative to root), and returns the host path of
// an existing file.
func resolveIn(root, path string) (string, error) {
	parts := strings.Split(strings.Trim(filepath.Clean("/"+path), "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		name := parts[0]
		parts = parts[1:]
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		l, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(l) {
			cur = "/"
		}
		parts = append(strings.Split(strings.Trim(l, "/"), "/"), parts...)
	}
	return filepath.Join(root, cur), nil
}

func (r *runner) writeLog() error {
	if err := r.removeState(); err != nil {
		return err
	}
	data, err := os.ReadFile(r.res.LogFile)
	if err != nil {
		return err
	}
	dst := filepath.Join(r.p.Root, TargetLog)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o640)
}

func (r *runner) unmount() error {
	r.mounted = false
	unix.Sync()
	devs := r.targetDevs()
	if err := r.sess.Unmount(); err != nil {
		return err
	}
	return r.closeDevices(devs)
}

// closeRetries and closeWait bound closeDevices' retries.
var closeRetries, closeWait = 10, 500 * time.Millisecond

// closeDevices closes the layout's LVM, LUKS and md devices once Root is
// unmounted here. Nothing of the install holds them then: the target's
// namespace ended inside target.close. A device still busy means that a
// mount of Root's filesystems lives on elsewhere: the log and the error
// name the tasks holding them (holders). The close is tried again for a
// few seconds first, each try logged with its holders, because a holder
// can be short-lived and not the install's to end: any program that made
// a mount namespace while Root was mounted (unshare -m, a sandboxed build)
// holds a copy of Root's mounts until it exits.
func (r *runner) closeDevices(devs map[string]string) error {
	err := r.sess.Close()
	if err == nil {
		return nil
	}
	held := func() string {
		if h := holders(devs); h != "" {
			return h
		}
		return "no task has them mounted or open"
	}
	first := held()
	fmt.Fprintf(r.log, "close: %v; held by: %s\n", err, first)
	for i := 1; i <= closeRetries && err != nil; i++ {
		time.Sleep(closeWait)
		if err = r.sess.Close(); err != nil {
			fmt.Fprintf(r.log, "close: try %d: %v; held by: %s\n", i+1, err, held())
		}
	}
	if err != nil {
		return fmt.Errorf("%w; held by: %s", err, first)
	}
	fmt.Fprintf(r.out, "nixlos: the target's devices closed only after a wait; they were held by: %s\n", first)
	return nil
}

// cleanup undoes what it can after a failure. A failure once the boot
// loader step started and before the boot check passed removes the ways in
// (disarm) and the boot loader's completion from the state, so that the
// disk boots nothing and a resume installs the boot loader again.
func (r *runner) cleanup() {
	r.leave()
	r.removeKeyFiles()
	if r.mounted && (r.bootWrite || r.state.Done(StepBootloader)) && !r.state.Done(StepBootCheck) {
		if err := r.disarm(); err != nil {
			fmt.Fprintf(r.log, "cleanup: %v\n", err)
		}
		fmt.Fprintln(r.out, "nixlos: the boot loader this install wrote was removed: the disk boots nothing until an install completes")
		r.forget(StepBootloader)
	}
	devs := r.targetDevs()
	if r.mounted {
		r.mounted = false
		if err := r.sess.Unmount(); err != nil {
			fmt.Fprintf(r.log, "cleanup: %v\n", err)
		}
	}
	if r.touched {
		if err := r.closeDevices(devs); err != nil {
			fmt.Fprintf(r.log, "cleanup: %v\n", err)
		}
	}
}

// copyTree copies src into dst (created 0755): directories, regular files
// with their modes, and symlinks as links.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case info.Mode().IsRegular():
			return fsutil.CopyFile(path, target, info.Mode().Perm())
		}
		return nil // sockets, devices: not part of a flake
	})
}
