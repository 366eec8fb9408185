// Package deploy installs a running Linux machine over SSH (mkiso deploy):
// it checks the machine, shows the install plan against its real disks,
// uploads the installer's kernel and initrd with a static kexec (u-root's),
// kexecs into the installer with the machine's own network configuration,
// and follows the unattended install until it reports complete or failed.
//
// # Steps
//
//  1. Local: read the build (mkiso build --format pxe [--closure]): the
//     manifest, the installer binary and the sops files from its initrd;
//     check the host, the disks and the age key (it must open the host's
//     sops file: a wrong key stops here, before any connection).
//  2. Connect: SSH with the host key checked against known_hosts (or
//     --known-hosts; --insecure-host-key to skip), key auth from --ssh-key
//     or ssh-agent. Unreachable, unknown or changed host key, refused
//     login: exit 2, nothing done.
//  3. Probe (read-only, sh + cat only): root or passwordless sudo, kexec
//     support (/sys/kernel/kexec_loaded exists, kexec_load_disabled = 0,
//     no kernel lockdown), RAM (see RAMFloor), architecture, and the
//     network of the interface the SSH session came in on (its address
//     from SSH_CONNECTION, prefix and gateway from /proc/net/route, DNS
//     from /etc/resolv.conf). Each refusal: exit 2, the target unchanged.
//  4. Detect: a private tmpfs (/run/nixlos-deploy, mode 0700) gets the
//     build's own static installer, which runs `installer detect --json`.
//     The plan and the pre-flight gate (`installer plan/check --cmdline …
//     --detect`) run on the workstation against that report, with the
//     disks' current mounts ignored (after the kexec nothing is mounted).
//     The plan is printed; typing the host name confirms (--yes for
//     scripts). --dry-run stops here and removes the tmpfs.
//  5. Upload the kernel, kexec and the initrd into the tmpfs. The age key
//     goes inside the SSH session only: a small cpio holding
//     etc/nixlos/age.key (mode 0600) arrives on the stdin of the one
//     command that runs `kexec -l` with it in front of the initrd (the
//     installer finds it as an embedded key); that command's exit trap
//     deletes it and kexec's temporary copies however it ends, and the
//     tmpfs vanishes with the old kernel. The key is never on a command
//     line.
//  6. `kexec -l vmlinuz --initrd initrd --cmdline "…"` (kexec_file_load,
//     falling back to kexec_load), then `kexec -e` after the SSH session
//     closed. The command line is rendered by bootcfg.Render: console= of
//     the running kernel, ip=<addr>::<gw>:<mask>::<dev>:off:<dns> (the
//     machine stays reachable at the same address), nixlos.host,
//     nixlos.disk…, nixlos.auto=1, nixlos.server=URL, nixlos.after.
//  7. Follow: deploy runs the PXE server's HTTP side only (package pxe:
//     /v1/status, /v1/machine, /nix-cache/ for the build's closure) on the
//     workstation's end of the SSH connection; the installer reaches it
//     at nixlos.server=http://<workstation as the target saw it>:<port>
//     (SSH_CONNECTION's client address; --server-url when NAT is in
//     between). An SSH port forward would die with the old kernel, and the
//     installer runs no SSH server, so the status API is the channel. Each
//     report is printed; exit 0 on complete, 1 on failed (the message) or
//     when nothing is heard within ReportTimeout after the kexec.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/netconf"
	"github.com/nixlos/nixlos/pipeline"
	"github.com/nixlos/nixlos/preflight"
	"github.com/nixlos/nixlos/pxe"
	"github.com/nixlos/nixlos/pxe/wire"
)

// Options are the flags of mkiso deploy.
type Options struct {
	Target          string   // [user@]host[:port]
	Port            int      // SSH port (default 22)
	Host            string   // the flake host to install
	Disks           []string // KEY=DEV or DEV (as nixlos.disk[.KEY]); none = auto
	SSHKey          string
	KnownHosts      string
	InsecureHostKey bool
	Build           string // mkiso build output (DIR or DIR/pxe)
	Flake           string // without Build: build this flake's host first (PXE bundle, --closure) into a temp dir
	AgeKey          string // age identity file ("" = the one embedded in the build, if any)
	IP              string // ip= for the installer instead of the detected one
	After           string // nixlos.after (default reboot)
	ServerURL       string // nixlos.server as the target reaches the workstation
	Listen          string // status server address (default: the SSH connection's local address, port 0)
	Yes, DryRun     bool

	Stdin    io.Reader
	Terminal bool // Stdin is a terminal
	Stdout   io.Writer

	// ReportTimeout bounds the wait for the installer's first report
	// after the kexec (default 15 min); Timeout the whole install (default 2 h).
	ReportTimeout, Timeout time.Duration
	// Dial replaces DialSSH (tests); KexecBinary skips building kexec.
	Dial        func(context.Context, SSHConfig) (Target, error)
	KexecBinary string
}

// RemoteDir is the tmpfs deploy mounts on the target (/tmp/… without /run).
const RemoteDir = "/run/nixlos-deploy"

// RAMFloor is the total memory the target needs: the installer runs from
// RAM after the kexec (preflight's floor for the install method: CopyRAM
// with the build's closure, BuildRAM without).
func RAMFloor(closure bool) uint64 {
	if closure {
		return preflight.CopyRAM
	}
	return preflight.BuildRAM
}

type run struct {
	o       Options
	out     io.Writer
	bi      *buildInfo
	key     *agekey.Key
	t       Target
	f       Facts
	sudo    string
	dir     string
	mounted bool
	tmp     string
	cmdline bootcfg.Cmdline
	mac     string
}

func (r *run) step(format string, args ...any) {
	fmt.Fprintf(r.out, "deploy: "+format+"\n", args...)
}

// Run deploys. Errors are *errs.InputError (exit 2) for everything found
// before the target changes, plain errors (exit 1) after.
func Run(ctx context.Context, o Options) (err error) {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Port == 0 {
		o.Port = 22
	}
	if o.ReportTimeout == 0 {
		o.ReportTimeout = 15 * time.Minute
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Hour
	}
	if o.Dial == nil {
		o.Dial = DialSSH
	}
	r := &run{o: o, out: o.Stdout}
	if r.tmp, err = os.MkdirTemp("", "nixlos-deploy-"); err != nil {
		return err
	}
	defer os.RemoveAll(r.tmp)
	if err := r.local(); err != nil {
		return err
	}

	user, host, port, err := ParseTarget(o.Target, o.Port)
	if err != nil {
		return err
	}
	r.step("connect %s@%s:%d", user, host, port)
	r.t, err = o.Dial(ctx, SSHConfig{User: user, Host: host, Port: port, Key: o.SSHKey, KnownHosts: o.KnownHosts, InsecureHostKey: o.InsecureHostKey, Log: r.out})
	if err != nil {
		return err
	}
	defer func() {
		if r.t != nil {
			r.cleanup()
			r.t.Close()
		}
	}()
	if err := r.probe(ctx); err != nil {
		return err
	}
	report, err := r.detect(ctx)
	if err != nil {
		return err
	}
	if err := r.plan(ctx, report); err != nil {
		return err
	}
	if o.DryRun {
		r.step("dry run: every check passed; nothing was written (the tmpfs is removed)")
		return nil
	}
	if err := r.confirm(); err != nil {
		return err
	}
	return r.install(ctx)
}

// local checks everything that needs no target.
func (r *run) local() error {
	o := r.o
	if o.Host == "" {
		return errs.BadInput("--host", "name the flake host to install: --host NAME", "missing")
	}
	if o.Target == "" {
		return errs.Usagef("no target (fix: mkiso deploy [user@]HOST --host NAME --build DIR)")
	}
	if o.Build == "" && o.Flake != "" {
		dir, err := r.build(o.Flake)
		if err != nil {
			return err
		}
		o.Build, r.o.Build = dir, dir
	}
	r.step("read build %s", o.Build)
	bi, err := readBuild(o.Build)
	if err != nil {
		return err
	}
	r.bi = bi
	h, ok := bi.Parsed.Hosts[o.Host]
	if !ok {
		return errs.BadInput("--host "+o.Host, "one of: "+strings.Join(bi.hosts(), ", ")+" (or rebuild with --host "+o.Host+")", "not a host of the build")
	}
	c := bootcfg.Cmdline{Host: o.Host, Auto: true, After: bootcfg.AfterReboot}
	if o.After != "" {
		c.After = bootcfg.After(o.After)
	}
	for _, d := range o.Disks {
		k, v, ok := strings.Cut(d, "=")
		if !ok {
			if c.Disk != "" {
				return errs.BadInput("--disk "+d, "give KEY=DEV for each disk of a layout with several", "a second --disk without a key")
			}
			c.Disk = d
			continue
		}
		if c.Disks == nil {
			c.Disks = map[string]string{}
		}
		c.Disks[k] = v
	}
	if c.Disk == "" && len(c.Disks) == 0 {
		c.Disk = bootcfg.AutoDisk
	}
	if o.IP != "" {
		n, err := netconf.ParseIP(o.IP)
		if err != nil {
			return err
		}
		c.Net = n
	}
	// Parse what will be rendered: the installer must accept it.
	if _, err := bootcfg.Parse(bootcfg.Render(c)); err != nil {
		return err
	}
	r.cmdline = c
	switch {
	case o.AgeKey != "":
		k, err := agekey.Load(o.AgeKey)
		if err != nil {
			return err
		}
		r.key = k
		if h.SopsFile != "" {
			data, ok := bi.Sops[h.SopsFile]
			if !ok {
				return errs.BadInput(h.SopsFile, "rebuild: the build's flake must hold the host's sops file", "not in the build's flake")
			}
			res, err := agekey.Verify(k, data, h.SopsFile)
			if err != nil {
				return errs.BadInput("--age-key "+o.AgeKey, "give the age key the host's secrets are encrypted to", "the key does not open %s (nothing was done on the target): %v", h.SopsFile, err)
			}
			r.step("age key %s opens %s (%d values)", res.Recipient, h.SopsFile, res.Values)
		}
	case bi.KeyInside:
		r.step("age key: embedded in the build")
	case h.SopsFile != "":
		return errs.BadInput("--age-key", "give the host's age key: --age-key FILE", "host %s has secrets (%s) and the build embeds no key", o.Host, h.SopsFile)
	}
	if h.Toplevel != "" && !bi.Closure {
		return errs.BadInput(o.Build, "rebuild with --closure, or give the build's own directory", "the manifest names a closure for %s but the bundle has no %s/", o.Host, pxe.CacheDir)
	}
	return nil
}

// build runs mkiso build FLAKE --host HOST --closure --format pxe into the
// run's temp dir (no age key inside: deploy sends it itself).
func (r *run) build(flakeDir string) (string, error) {
	out := filepath.Join(r.tmp, "build")
	r.step("build %s for %s (--closure, PXE bundle) into a temporary directory", flakeDir, r.o.Host)
	p, err := pipeline.NewProfile(pipeline.Options{Flake: flakeDir, Out: out, Hosts: []string{r.o.Host}, Closure: true, Formats: []image.Format{image.FormatPXE}})
	if err != nil {
		return "", err
	}
	if _, err := pipeline.Build(context.Background(), p, indentWriter{r.out}); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	return out, nil
}

type indentWriter struct{ w io.Writer }

func (i indentWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(i.w, indent(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (r *run) sh(ctx context.Context, cmd string, stdin io.Reader) (string, error) {
	var out bytes.Buffer
	err := r.t.Run(ctx, cmd, stdin, &out, &out)
	return out.String(), err
}

// probe runs the read-only checks.
func (r *run) probe(ctx context.Context) error {
	r.step("probe the target (read-only)")
	out, err := r.sh(ctx, probeScript, nil)
	if err != nil && !isExit(err) {
		return fmt.Errorf("probe: %w", err)
	}
	f, err := ParseFacts(out)
	if err != nil {
		return errs.BadInput(r.o.Target, "the target needs a POSIX /bin/sh login shell", "%v", err)
	}
	r.f = f
	if err := r.check(); err != nil {
		return err
	}
	if f.UID != 0 {
		r.sudo = "sudo -n "
	}
	r.dir = RemoteDir
	if !f.HasRun {
		r.dir = "/tmp/nixlos-deploy"
	}
	return nil
}

// check turns the facts into refusals (exit 2, nothing changed).
func (r *run) check() error {
	f, t := r.f, r.o.Target
	switch {
	case f.UID != 0 && !f.Sudo:
		return errs.BadInput(t, "log in as root (root@HOST) or give the user passwordless sudo", "user is not root (uid %d) and sudo -n does not work: kexec and mounting need root", f.UID)
	case f.Arch != "" && f.Arch != "x86_64":
		return errs.BadInput(t, "deploy to an x86_64 machine", "the machine is %s; the installer is built for x86_64", f.Arch)
	case !f.KexecSupported:
		return errs.BadInput(t, "boot the machine from installer media instead (mkiso build: ISO, USB or PXE), or run a kernel with CONFIG_KEXEC", "its kernel %s has no kexec support (/sys/kernel/kexec_loaded is missing)", f.Kernel)
	case f.KexecDisabled:
		return errs.BadInput(t, "kexec_load_disabled cannot be turned off again: reboot the machine with it unset, then deploy", "kexec is disabled (/proc/sys/kernel/kexec_load_disabled = 1)")
	case f.Lockdown == "integrity" || f.Lockdown == "confidentiality":
		return errs.BadInput(t, "turn off Secure Boot / kernel lockdown, or boot installer media", "the kernel is locked down (%s): it only kexecs signed kernels", f.Lockdown)
	}
	floor := RAMFloor(r.hostClosure())
	stage := r.stageBytes()
	if f.MemTotal > 0 && f.MemTotal < floor {
		what := "building the system on the machine"
		if r.hostClosure() {
			what = "copying the prebuilt closure"
		}
		return errs.BadInput(t, "give the machine more memory, or boot installer media", "it has %s of RAM; the installer runs from RAM and %s needs at least %s", hw.HumanBytes(f.MemTotal), what, hw.HumanBytes(floor))
	}
	if need := 3*stage + 64<<20; f.MemAvailable > 0 && f.MemAvailable < need {
		return errs.BadInput(t, "stop services to free memory, or give the machine more", "only %s of RAM is free; staging the installer (%s in a tmpfs, copied once more by kexec and then into the kernel) needs %s", hw.HumanBytes(f.MemAvailable), hw.HumanBytes(stage), hw.HumanBytes(need))
	}
	r.step("target: %s, kernel %s, %s RAM (%s free; floor %s), kexec supported, root%s", f.Arch, f.Kernel, hw.HumanBytes(f.MemTotal), hw.HumanBytes(f.MemAvailable), hw.HumanBytes(floor), map[bool]string{true: " via sudo", false: ""}[f.UID != 0])
	return nil
}

func (r *run) hostClosure() bool {
	return r.bi.Closure && r.bi.Parsed.Hosts[r.o.Host].Toplevel != ""
}

// stageBytes is what deploy uploads: kernel, initrd, kexec, installer.
func (r *run) stageBytes() uint64 {
	var n uint64
	for _, p := range []string{r.bi.Kernel, r.bi.Initrd} {
		if fi, err := os.Stat(p); err == nil {
			n += uint64(fi.Size())
		}
	}
	return n + uint64(len(r.bi.Installer)) + 8<<20
}

func isExit(err error) bool {
	var ee *ExitError
	return errors.As(err, &ee)
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// mount makes the private tmpfs.
func (r *run) mount(ctx context.Context) error {
	// u-root's kexec copies the kernel and the initrd once more into
	// TMPDIR (this tmpfs) before loading them.
	size := 2*r.stageBytes() + 32<<20
	// A tmpfs left by an interrupted run is unmounted first.
	cmd := fmt.Sprintf("%ssh -c %s", r.sudo, shq(fmt.Sprintf("set -e; if grep -q ' %[1]s ' /proc/mounts; then umount %[1]s; fi; mkdir -p %[1]s; mount -t tmpfs -o mode=0700,size=%[2]dk nixlos-deploy %[1]s", r.dir, size>>10)))
	if out, err := r.sh(ctx, cmd, nil); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %v: %s", r.dir, err, strings.TrimSpace(out))
	}
	r.mounted = true
	return nil
}

// cleanup removes the tmpfs (before the kexec; after it, there is nothing).
func (r *run) cleanup() {
	if !r.mounted {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r.sh(ctx, fmt.Sprintf("%ssh -c %s", r.sudo, shq(fmt.Sprintf("umount %[1]s && rmdir %[1]s", r.dir))), nil)
	r.mounted = false
}

func (r *run) upload(ctx context.Context, name string, data io.Reader, what string) error {
	start := time.Now()
	cr := &countReader{r: data}
	dst := r.dir + "/" + name
	cmd := fmt.Sprintf("%ssh -c %s", r.sudo, shq(fmt.Sprintf("umask 077; cat > %[1]s && chmod 0700 %[1]s", dst)))
	if out, err := r.sh(ctx, cmd, cr); err != nil {
		return fmt.Errorf("upload %s: %v: %s", what, err, strings.TrimSpace(out))
	}
	r.step("uploaded %s (%s in %.1f s)", what, hw.HumanBytes(uint64(cr.n)), time.Since(start).Seconds())
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// detect uploads the installer and runs `installer detect --json`.
func (r *run) detect(ctx context.Context) (hw.Report, error) {
	var rep hw.Report
	if err := r.mount(ctx); err != nil {
		return rep, err
	}
	if err := r.upload(ctx, "installer", bytes.NewReader(r.bi.Installer), "the installer"); err != nil {
		return rep, err
	}
	var stdout, stderr bytes.Buffer
	err := r.t.Run(ctx, r.sudo+r.dir+"/installer detect --json", nil, &stdout, &stderr)
	if err != nil {
		return rep, fmt.Errorf("installer detect on the target: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return rep, fmt.Errorf("installer detect: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.tmp, "detect-raw.json"), stdout.Bytes(), 0o600); err != nil {
		return rep, err
	}
	return rep, nil
}

// plan prints the plan for the detected disks and runs the pre-flight gate,
// both with the build's installer on the workstation (--detect).
func (r *run) plan(ctx context.Context, rep hw.Report) error {
	n, iface, err := r.network(rep)
	if err != nil {
		return err
	}
	r.cmdline.Net = n
	r.mac = r.f.MACs[iface]
	r.step("network after kexec: ip=%s (the address the SSH session came in on, %s %s)", n.String(), iface, r.mac)

	// After the kexec nothing of the running system is mounted: its disks
	// count as free (the machine's own disk is usually the target).
	for i := range rep.Disks {
		if rep.Disks[i].Kind == hw.KindDisk && (len(rep.Disks[i].InUse) > 0 || rep.Disks[i].BootMedium) {
			r.step("note: %s is in use by the running system (%s%s); it will not be after the kexec", rep.Disks[i].Path, strings.Join(rep.Disks[i].InUse, " "), rep.Disks[i].BootReason)
			rep.Disks[i].InUse, rep.Disks[i].BootMedium, rep.Disks[i].BootReason = nil, false, ""
		}
	}
	data, _ := json.Marshal(rep)
	detectFile := filepath.Join(r.tmp, "detect.json")
	manifest := filepath.Join(r.tmp, "manifest.json")
	inst := filepath.Join(r.tmp, "installer")
	for _, w := range []struct {
		p string
		d []byte
		m os.FileMode
	}{{detectFile, data, 0o600}, {manifest, r.bi.Manifest, 0o600}, {inst, r.bi.Installer, 0o700}} {
		if err := os.WriteFile(w.p, w.d, w.m); err != nil {
			return err
		}
	}
	sel := bootcfg.Render(bootcfg.Cmdline{Host: r.cmdline.Host, Disk: r.cmdline.Disk, Disks: r.cmdline.Disks, Auto: true, After: r.cmdline.After, Net: r.cmdline.Net})
	run := func(args ...string) (string, int, error) {
		cmd := exec.CommandContext(ctx, inst, args...)
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return b.String(), ee.ExitCode(), nil
		}
		return b.String(), 0, err
	}
	out, code, err := run("plan", "--cmdline", sel, "--manifest", manifest, "--detect", detectFile)
	if err != nil {
		return fmt.Errorf("installer plan: %w", err)
	}
	if code != 0 {
		return errs.BadInput("--disk", "name the disks with --disk KEY=DEV (see the target's disks above)", "no plan for %s on %s:\n%s", r.o.Host, r.o.Target, indent(out))
	}
	r.step("install plan for %s on %s:", r.o.Host, r.o.Target)
	fmt.Fprint(r.out, indent(out))
	out, code, err = run("check", "--cmdline", sel, "--manifest", manifest, "--detect", detectFile)
	if err != nil {
		return fmt.Errorf("installer check: %w", err)
	}
	if code != 0 {
		return errs.BadInput(r.o.Target, "see the findings above", "the pre-flight gate refuses the machine:\n%s", indent(out))
	}
	r.step("pre-flight gate:")
	fmt.Fprint(r.out, indent(out))
	return nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

func (r *run) network(rep hw.Report) (netconf.Config, string, error) {
	if r.o.IP != "" {
		return r.cmdline.Net, r.cmdline.Net.Device, nil
	}
	n, iface, err := r.f.Network(rep.NICs)
	var w warning
	if errors.As(err, &w) {
		r.step("warning: %s", w)
		err = nil
	}
	return n, iface, err
}

func (r *run) confirm() error {
	if r.o.Yes {
		return nil
	}
	if !r.o.Terminal || r.o.Stdin == nil {
		return errs.BadInput("confirmation", "run it on a terminal to type the host name, or pass --yes", "the disks above would be wiped and no terminal is there to confirm (nothing was written)")
	}
	fmt.Fprintf(r.out, "Type the host name (%s) to kexec %s into the installer and wipe the disks above: ", r.o.Host, r.o.Target)
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := r.o.Stdin.Read(buf)
		if n == 1 && buf[0] != '\n' {
			line = append(line, buf[0])
		}
		if err != nil || n == 1 && buf[0] == '\n' {
			break
		}
	}
	if strings.TrimSpace(string(line)) != r.o.Host {
		return errs.BadInput("confirmation", "type the host name exactly", "%q is not %q: nothing was written", strings.TrimSpace(string(line)), r.o.Host)
	}
	return nil
}

// install uploads, kexecs and follows the installer.
func (r *run) install(ctx context.Context) error {
	st, base, err := r.startServer()
	if err != nil {
		return err
	}
	defer st.Close()
	r.cmdline.Server = base
	r.cmdline.Consoles = r.f.Consoles
	line := bootcfg.Render(r.cmdline)
	if _, err := bootcfg.Parse(line); err != nil {
		return fmt.Errorf("installer command line %q: %w", line, err)
	}
	r.step("status server %s (the installer reports there)", base)

	kx := r.o.KexecBinary
	if kx == "" {
		r.step("build u-root's kexec (static)")
		if kx, err = kexecBinary(ctx, r.tmp); err != nil {
			return err
		}
	}
	for _, u := range []struct{ name, path, what string }{{"kexec", kx, "kexec (u-root, static)"}, {"vmlinuz", r.bi.Kernel, "the installer kernel"}} {
		f, err := os.Open(u.path)
		if err != nil {
			return err
		}
		err = r.upload(ctx, u.name, f, u.what)
		f.Close()
		if err != nil {
			return err
		}
	}
	initrd, err := os.Open(r.bi.Initrd)
	if err != nil {
		return err
	}
	defer initrd.Close()
	if err := r.upload(ctx, "initrd", initrd, "the installer initrd"); err != nil {
		return err
	}
	// The age key exists on the target only while this one command runs:
	// it arrives on the command's stdin (inside the SSH session) as a cpio
	// that kexec puts in front of the initrd, and the trap deletes it (and
	// kexec's own temporary copies) however the command ends.
	d := r.dir
	initrds := "./initrd"
	var stdin io.Reader
	if r.key != nil {
		initrds = "./key.cpio ./initrd"
		stdin = bytes.NewReader(KeyArchive(r.key.File()))
		r.step("kexec -l, the age key in front of the initrd, sent inside this SSH session (command line: %s)", line)
	} else {
		r.step("kexec -l (command line: %s)", line)
	}
	load := fmt.Sprintf(`cd %[1]s || exit 1
export TMPDIR=%[1]s
clean() { for f in ./*; do [ "$f" = ./kexec ] || rm -rf "$f"; done; }
trap clean EXIT
trap 'exit 129' HUP
trap 'exit 143' TERM
umask 077
%[3]s
./kexec -l ./vmlinuz --initrd %[4]s --cmdline %[2]s || ./kexec -L -l ./vmlinuz --initrd %[4]s --cmdline %[2]s
`, d, shq(line), map[bool]string{true: "cat > ./key.cpio || exit 1", false: ": no key"}[r.key != nil], shq(initrds))
	out, err := r.sh(ctx, r.sudo+"sh -c "+shq(load), stdin)
	r.key = nil
	if err != nil {
		return fmt.Errorf("kexec -l on the target failed (the running system is unchanged; the age key is deleted): %v\n%s", err, indent(out))
	}
	r.step("kexec -e: the machine leaves its running system now")
	exe := fmt.Sprintf("(trap '' HUP; sleep 2; sync; exec %s/kexec -e) </dev/null >/dev/null 2>&1 &", d)
	if out, err := r.sh(ctx, r.sudo+"sh -c "+shq(exe), nil); err != nil {
		return fmt.Errorf("kexec -e: %v: %s", err, strings.TrimSpace(out))
	}
	r.mounted = false // gone with the old kernel
	r.t.Close()
	r.t = nil
	return r.follow(ctx, st)
}

// failureLogSep separates the reason and the install log's last lines in
// the installer's "failed" report (cmd/installer's failureLogSep).
const failureLogSep = " | "

// statusServer is the HTTP half of the PXE server in deploy mode.
type statusServer struct {
	srv    *pxe.Server
	events chan pxe.Event
}

func (s *statusServer) Close() error { return s.srv.Close() }

func (r *run) startServer() (*statusServer, string, error) {
	listen := r.o.Listen
	if listen == "" {
		la, ok := r.t.LocalAddr().(*net.TCPAddr)
		if !ok || la.IP.To4() == nil {
			return nil, "", errs.BadInput("--listen", "give --listen ADDR:PORT (an IPv4 address the target can reach) and --server-url", "the SSH connection is not over IPv4 (%v)", r.t.LocalAddr())
		}
		listen = net.JoinHostPort(la.IP.String(), "0")
	}
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, "", errs.BadInput("--listen "+listen, "give ADDR:PORT", "%v", err)
	}
	ip, err := netip.ParseAddr(h)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil || !ip.Is4() {
		return nil, "", errs.BadInput("--listen "+listen, "give an IPv4 ADDR:PORT", "not an IPv4 address and port")
	}
	b, err := pxe.OpenBundle(r.bi.Dir, "")
	if err != nil {
		return nil, "", err
	}
	var mp *pxe.Map
	if r.mac != "" {
		mp, err = pxe.ParseMap([]byte(fmt.Sprintf("[[machine]]\nmac = %q\nhost = %q\n", r.mac, r.o.Host)), "deploy")
		if err != nil {
			return nil, "", err
		}
	}
	ev := make(chan pxe.Event, 64)
	tr, _ := pxe.NewTracker(func(e pxe.Event) {
		select {
		case ev <- e:
		default:
		}
	}, "")
	srv, err := pxe.New(pxe.Config{Addr: ip, HTTPPort: port, DHCPPort: -1, ProxyPort: -1, TFTPPort: -1, Bundle: b, Map: mp, Unknown: pxe.UnknownIgnore, Tracker: tr})
	if err != nil {
		return nil, "", err
	}
	if err := srv.Start(); err != nil {
		return nil, "", fmt.Errorf("status server: %w", err)
	}
	base := r.o.ServerURL
	if base == "" {
		if !r.f.ClientIP.Is4() {
			srv.Close()
			return nil, "", errs.BadInput("--server-url", "give --server-url http://ADDR:PORT as the target reaches this machine (and --listen)", "cannot tell the workstation's address as the target sees it (SSH_CONNECTION)")
		}
		base = fmt.Sprintf("http://%s", net.JoinHostPort(r.f.ClientIP.String(), strconv.Itoa(srv.HTTPAddr.Port)))
	}
	return &statusServer{srv: srv, events: ev}, strings.TrimRight(base, "/"), nil
}

// follow prints the installer's reports until complete or failed.
func (r *run) follow(ctx context.Context, st *statusServer) error {
	start := time.Now()
	first := time.NewTimer(r.o.ReportTimeout)
	defer first.Stop()
	all := time.NewTimer(r.o.Timeout)
	defer all.Stop()
	heard := false
	r.step("waiting for the installer (first report within %s)", r.o.ReportTimeout)
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while the installer runs on %s: it continues unattended", r.o.Target)
		case <-first.C:
			if !heard {
				return fmt.Errorf("no report from the installer within %s of the kexec: it may not have reached %s (network ip=%s); look at the machine's console", r.o.ReportTimeout, r.cmdline.Server, r.cmdline.Net.String())
			}
		case <-all.C:
			return fmt.Errorf("the install did not finish within %s", r.o.Timeout)
		case e := <-st.events:
			if e.State == wire.StateRefused || e.State == wire.StateLocalBoot {
				continue
			}
			heard = true
			msg := e.Message
			if msg == "" {
				msg = "-"
			}
			r.step("[%5.0fs] %s %s: %s", time.Since(start).Seconds(), e.MAC, e.State, msg)
			switch e.State {
			case wire.StateComplete:
				r.step("install complete host=%s (after: %s)", r.o.Host, r.cmdline.After)
				return nil
			case wire.StateFailed:
				reason, tail, _ := strings.Cut(e.Message, failureLogSep)
				msg := fmt.Sprintf("install failed on %s: %s", r.o.Target, reason)
				if tail != "" {
					msg += "\nlast lines of the install log:\n  | " + strings.ReplaceAll(tail, failureLogSep, "\n  | ")
				}
				return fmt.Errorf("%s\n(the installer left a shell on the machine's console; the whole log is /var/log/nixlos-install.log there)", msg)
			}
		}
	}
}
