package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/install"
	"github.com/nixlos/nixlos/netconf"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
	"github.com/nixlos/nixlos/pxe/wire"
)

// version is set at link time: -ldflags "-X main.version=...".
var version = "dev"

// boot is one run of the boot flow: the consoles, the console input and
// what was decided so far.
type boot struct {
	out     io.Writer     // every console
	in      *bufio.Reader // the console typed on (stdin)
	inFile  *os.File
	cmdline bootcfg.Cmdline
	raw     string
	mac     string // the NIC that reached nixlos.server
	host    string
	logFile string
}

// runBootFlow is the installer as u-root's uinit: ready line, command
// line, network and per-MAC settings when nixlos.server is set, the age
// key, host and disks (menu when undecided), confirmation, install, then
// nixlos.after. A failure prints "nixlos: install failed: <reason>", the
// log path, and starts a shell (never a reboot).
func runBootFlow(stdout, stderr io.Writer) error {
	raw, _ := os.ReadFile("/proc/cmdline")
	out, closeAll := openConsoles(consoleNames(string(raw)), stdout)
	defer closeAll()
	fmt.Fprintf(out, "nixlos-installer %s ready\n", version)
	loadBootModules(bootModulesFile, out)
	b := &boot{out: out, in: bufio.NewReader(os.Stdin), inFile: os.Stdin, raw: string(raw), logFile: install.DefaultLogFile}
	after, err := b.run(context.Background())
	if errors.Is(err, errEnrolled) { // discovery mode: the next boot installs
		return doAfter(out, bootcfg.AfterReboot, closeAll)
	}
	if err != nil {
		b.fail(err)
		closeAll()
		return execShell()
	}
	fmt.Fprintf(out, "nixlos: install complete host=%s\n", b.host)
	b.report("complete", "")
	return doAfter(out, after, closeAll)
}

// fail prints the failure lines and reports it.
func (b *boot) fail(err error) {
	reason := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintf(b.out, "nixlos: install failed: %s\n", reason)
	report := reason
	if data, rerr := os.ReadFile(b.logFile); rerr == nil {
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(b.out, "nixlos: log: %s (last lines below)\n", b.logFile)
		for _, l := range lines {
			fmt.Fprintf(b.out, "  | %s\n", l)
		}
		report += failureLogSep + strings.Join(lines[max(0, len(lines)-5):], failureLogSep)
	}
	fmt.Fprintln(b.out, "nixlos: starting a shell (fix the problem, then run 'installer install ...' or reboot)")
	b.report("failed", report)
}

// failureLogSep joins the reason and the install log's last lines in a
// "failed" status report (one line: the status API keeps no newlines);
// mkiso deploy prints them as lines again.
const failureLogSep = " | "

// report posts a state to nixlos.server, when there is one.
func (b *boot) report(state, msg string) {
	if b.cmdline.Server == "" || b.mac == "" {
		return
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wire.ReportStatus(ctx, nil, b.cmdline.Server, wire.Status{MAC: b.mac, Host: b.host, State: state, Message: msg}); err != nil {
		fmt.Fprintf(b.out, "nixlos: warning: status report to %s: %v\n", b.cmdline.Server, err)
	}
}

func (b *boot) run(ctx context.Context) (bootcfg.After, error) {
	c, err := bootcfg.Parse(b.raw)
	b.cmdline = c
	if err != nil {
		return "", err
	}
	for _, w := range c.Warnings {
		fmt.Fprintf(b.out, "nixlos: warning: %s\n", w)
	}
	m, err := flake.LoadManifest(defaultManifest)
	if err != nil {
		return c.After, err
	}

	// Network and per-MAC settings, only for nixlos.server.
	offline := true
	if c.Server != "" {
		fmt.Fprintf(b.out, "nixlos: network: %s\n", c.Net.String())
		res, err := netconf.Configure(ctx, c.Net, netconf.Options{Log: io.Discard})
		if err != nil {
			return c.After, fmt.Errorf("network for nixlos.server=%s: %w", c.Server, err)
		}
		offline = false
		fmt.Fprintf(b.out, "nixlos: network: %s on %s\n", res.Address, res.Link)
		if ifc, err := net.InterfaceByName(res.Link); err == nil {
			b.mac = ifc.HardwareAddr.String()
		}
		if c.Discover {
			return c.After, b.discover(ctx, c.Server)
		}
		if err := b.merge(ctx, &c); err != nil {
			return c.After, err
		}
		b.report("installing", "")
	}

	key, err := b.key(ctx, c)
	if err != nil {
		return c.After, err
	}

	disks, err := hw.Disks(hw.Options{})
	if err != nil {
		return c.After, fmt.Errorf("detect disks: %w", err)
	}
	hosts := manifestHosts(m)
	ch, err := bootcfg.Choose(hosts, c, disks)
	if err != nil {
		return c.After, err
	}
	for !ch.Decided() {
		if c.Auto {
			return c.After, fmt.Errorf("%s=1 but %s is undecided", bootcfg.ParamAuto, strings.Join(ch.Menu, ", "))
		}
		saved := c
		saved.Disks = maps.Clone(c.Disks)
		if err := b.menu(&c, ch, hosts, disks); err != nil {
			return c.After, err
		}
		next, err := bootcfg.Choose(hosts, c, disks)
		if err != nil {
			fmt.Fprintf(b.out, "nixlos: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			c = saved
			continue
		}
		ch = next
	}
	b.host = ch.Host
	fmt.Fprintln(b.out, ch.ConsoleLine())
	if err := linkChosen("/", ch); err != nil {
		return c.After, err
	}

	if key == nil && m.Hosts[ch.Host].SopsFile != "" && !c.Auto {
		if key, err = b.pasteKey(); err != nil {
			return c.After, err
		}
	}
	var diskArgs []string
	for k, dev := range ch.Disks {
		diskArgs = append(diskArgs, k+"="+dev)
	}
	sort.Strings(diskArgs)
	opt := install.Options{
		Host: ch.Host, Manifest: m, Disks: diskArgs, Key: key, Offline: offline, LogFile: b.logFile, Keep: c.Keep,
	}
	if !c.Auto && term.IsTerminal(int(b.inFile.Fd())) {
		opt.Password = b.password
	}
	release := useClosure(ctx, m, ch.Host, disks, true, c.Server, &opt, b.out)
	defer release()
	if err := b.preflight(m, ch, c, disks, opt); err != nil {
		return c.After, err
	}
	p, err := install.NewPlan(opt)
	if err != nil {
		return c.After, err
	}
	if err := (&apply.Session{Plan: p.Layout, Root: p.Root}).Preflight(); err != nil {
		return c.After, err
	}
	if p, err = b.resume(ctx, p, opt, c.Auto); err != nil {
		return c.After, err
	}
	if !c.Auto {
		p.Write(b.out)
		if err := b.confirmUnlessResume(p); err != nil {
			return c.After, err
		}
	} else if p.Layout != nil && p.Layout.Keep != nil { // unattended: say what stays, as the confirmation would
		fmt.Fprintf(b.out, "nixlos: keeping %s; erasing %s\n", strings.Join(p.Layout.Keep.What, ", "), strings.Join(p.Layout.Keep.Wiped(), ", "))
	}
	fmt.Fprintf(b.out, "nixlos: installing host=%s (log %s)\n", ch.Host, b.logFile)
	console := b.out
	if b.cmdline.Server != "" && b.mac != "" { // each step to the server too (mkiso deploy/serve print them)
		sr := newStepReporter(b.out, func(m string) { b.report("installing", m) })
		defer sr.Close()
		console = sr
	}
	res, err := install.Run(ctx, p, opt, console)
	if err != nil {
		return c.After, err
	}
	fmt.Fprintf(b.out, "nixlos: system %s\nnixlos: bootloader %s\n", res.System, res.Bootloader)
	return ch.After, nil
}

// merge adds the server's per-MAC settings to what the command line left
// open (the command line wins).
func (b *boot) merge(ctx context.Context, c *bootcfg.Cmdline) error {
	if b.mac == "" {
		return errors.New(bootcfg.ParamServer + ": no MAC address for the configured link")
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	info, err := wire.FetchMachine(fctx, nil, c.Server, b.mac)
	if errors.Is(err, wire.ErrUnknownMachine) {
		fmt.Fprintf(b.out, "nixlos: %s is not in the server's map: choose at the menu\n", b.mac)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s=%s: %w", bootcfg.ParamServer, c.Server, err)
	}
	if c.Host == "" {
		c.Host = info.Host
	}
	if c.Disk == "" && len(c.Disks) == 0 {
		c.Disk = info.Disk
		if len(info.Disks) > 0 {
			c.Disks = map[string]string{}
			for k, v := range info.Disks {
				c.Disks[k] = v
			}
		}
	}
	explicitAfter := false
	for _, p := range bootcfg.Split(b.raw) {
		if p.Name == bootcfg.ParamAfter {
			explicitAfter = true
		}
	}
	if !explicitAfter && info.After != "" {
		c.After = bootcfg.After(info.After)
	}
	if info.Auto {
		c.Auto = true
	}
	var disks []string
	if info.Disk != "" {
		disks = append(disks, info.Disk)
	}
	for _, k := range slices.Sorted(maps.Keys(info.Disks)) {
		disks = append(disks, k+"="+info.Disks[k])
	}
	disk := strings.Join(disks, ",")
	fmt.Fprintf(b.out, "nixlos: server settings for %s: host=%s disk=%s after=%s\n", b.mac, info.Host, disk, info.After)
	return nil
}

// key finds the age key: embedded in the image, else from nixlos.server
// with nixlos.token. Nil when neither has one (the menu may ask).
func (b *boot) key(ctx context.Context, c bootcfg.Cmdline) (*agekey.Key, error) {
	if _, err := os.Stat(embeddedKey); err == nil {
		k, err := agekey.Load(embeddedKey)
		if err != nil {
			return nil, fmt.Errorf("embedded age key: %w", err)
		}
		fmt.Fprintf(b.out, "nixlos: age key %s (embedded)\n", k.Recipient())
		return k, nil
	}
	if c.Server != "" && c.Token != "" && b.mac != "" {
		fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		data, err := wire.FetchKey(fctx, nil, c.Server, b.mac, c.Token)
		if err != nil {
			return nil, fmt.Errorf("age key from %s: %w", c.Server, err)
		}
		k, err := agekey.Parse(data)
		clear(data)
		if err != nil {
			return nil, fmt.Errorf("age key from %s: %w", c.Server, err)
		}
		fmt.Fprintf(b.out, "nixlos: age key %s (from %s)\n", k.Recipient(), c.Server)
		return k, nil
	}
	return nil, nil
}

// pasteKey asks for the age key on the console without echo.
func (b *boot) pasteKey() (*agekey.Key, error) {
	fmt.Fprint(b.out, "Paste the age key (AGE-SECRET-KEY-1...) and press Enter: ")
	var line []byte
	var err error
	if fd := int(b.inFile.Fd()); term.IsTerminal(fd) {
		line, err = term.ReadPassword(fd)
	} else {
		var s string
		s, err = b.in.ReadString('\n')
		line = []byte(s)
	}
	fmt.Fprintln(b.out)
	if err != nil && len(line) == 0 {
		return nil, fmt.Errorf("age key: nothing pasted: %v", err)
	}
	k, err := agekey.Parse(line)
	clear(line)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.out, "nixlos: age key %s (pasted)\n", k.Recipient())
	return k, nil
}

// password asks a LUKS passphrase twice on the console.
func (b *boot) password(name, device string) ([]byte, error) {
	fd := int(b.inFile.Fd())
	for {
		fmt.Fprintf(b.out, "Passphrase for LUKS %s (%s): ", name, device)
		a, err := term.ReadPassword(fd)
		fmt.Fprintln(b.out)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(b.out, "Again: ")
		c, err := term.ReadPassword(fd)
		fmt.Fprintln(b.out)
		if err != nil {
			return nil, err
		}
		if string(a) == string(c) && len(a) > 0 {
			return a, nil
		}
		fmt.Fprintln(b.out, "They did not match or were empty; again.")
	}
}

// readLine reads one answer from the console.
func (b *boot) readLine() (string, error) {
	s, err := b.in.ReadString('\n')
	if err != nil && s == "" {
		return "", fmt.Errorf("console input: %w", err)
	}
	return strings.TrimSpace(s), nil
}

// menu asks, line by line, for what Choose left open: the host, then a
// disk for each layout disk that has none.
func (b *boot) menu(c *bootcfg.Cmdline, ch bootcfg.Choices, hosts []bootcfg.Host, disks []hw.Disk) error {
	for _, why := range ch.Menu {
		fmt.Fprintf(b.out, "nixlos: menu: %s\n", why)
	}
	if ch.Host == "" {
		fmt.Fprintln(b.out, "Hosts:")
		for i, h := range hosts {
			fmt.Fprintf(b.out, "  %d) %s (disks: %s)\n", i+1, h.Name, strings.Join(h.Disks, ", "))
		}
		for {
			fmt.Fprint(b.out, "Host to install (name or number): ")
			ans, err := b.readLine()
			if err != nil {
				return err
			}
			for i, h := range hosts {
				if ans == h.Name || ans == fmt.Sprint(i+1) {
					c.Host = h.Name
				}
			}
			if c.Host != "" {
				break
			}
			fmt.Fprintf(b.out, "no host %q\n", ans)
		}
		return nil // Choose again: it may decide the disks now
	}
	var keys []string
	for _, h := range hosts {
		if h.Name == ch.Host {
			keys = h.Disks
		}
	}
	fmt.Fprintln(b.out, "Disks:")
	for _, d := range disks {
		note := ""
		if ok, why := d.Candidate(); !ok {
			note = " — not available: " + why
		}
		fmt.Fprintf(b.out, "  %-10s %9s %s%s\n", d.Path, partition.FormatSize(d.SizeBytes), d.Model, note)
	}
	for _, k := range keys {
		if ch.Disks[k] != "" {
			continue
		}
		fmt.Fprintf(b.out, "Disk for %s's layout disk %q (e.g. %s): ", ch.Host, k, firstCandidate(disks))
		ans, err := b.readLine()
		if err != nil {
			return err
		}
		if ans == "" {
			continue
		}
		if !strings.HasPrefix(ans, "/dev/") {
			ans = "/dev/" + ans
		}
		if len(keys) == 1 {
			c.Disk = ans
		} else {
			if c.Disks == nil {
				c.Disks = map[string]string{}
			}
			c.Disks[k] = ans
		}
	}
	return nil
}

func firstCandidate(disks []hw.Disk) string {
	for _, d := range disks {
		if ok, _ := d.Candidate(); ok {
			return d.Path
		}
	}
	return "/dev/vda"
}

// confirm asks for each target device's name (or its base name).
func (b *boot) confirm(p *install.Plan) error {
	for _, k := range slices.Sorted(maps.Keys(p.Disks)) {
		dev := p.Disks[k]
		if p.Layout != nil && p.Layout.Keep != nil {
			kp := p.Layout.Keep
			fmt.Fprintf(b.out, "On %s (disk %s) %s will be kept; erased: %s. Type %s to install %s: ", dev, k, strings.Join(kp.What, ", "), strings.Join(kp.Wiped(), ", "), filepath.Base(dev), p.Host)
		} else {
			fmt.Fprintf(b.out, "All data on %s (disk %s) will be erased. Type %s to install %s: ", dev, k, filepath.Base(dev), p.Host)
		}
		ans, err := b.readLine()
		if err != nil {
			return err
		}
		if ans != dev && ans != filepath.Base(dev) {
			return fmt.Errorf("confirmation: got %q, not %s: nothing was written", ans, filepath.Base(dev))
		}
	}
	return nil
}

// manifestHosts lists the manifest's hosts with a layout for Choose.
func manifestHosts(m *flake.Manifest) []bootcfg.Host {
	var hs []bootcfg.Host
	for _, name := range m.HostNames() {
		h := m.Hosts[name]
		if !h.HasLayout() {
			continue
		}
		var keys []string
		for _, d := range h.Disks() {
			keys = append(keys, d.Key)
		}
		hs = append(hs, bootcfg.Host{Name: name, Disks: keys, Rules: h.DiskRules})
	}
	return hs
}

// doAfter performs nixlos.after.
func doAfter(out io.Writer, after bootcfg.After, closeAll func()) error {
	switch after {
	case bootcfg.AfterShell:
		fmt.Fprintln(out, "nixlos: shell")
		closeAll()
		return execShell()
	case bootcfg.AfterPoweroff, bootcfg.AfterReboot, "":
		if after == "" {
			after = bootcfg.AfterReboot
		}
		fmt.Fprintf(out, "nixlos: %s\n", after)
		closeAll()
		unix.Sync()
		drainConsole(out)
		cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
		if after == bootcfg.AfterReboot {
			cmd = unix.LINUX_REBOOT_CMD_RESTART
		}
		if err := unix.Reboot(cmd); err != nil {
			return fmt.Errorf("%s: %w", after, err)
		}
		return nil
	}
	return fmt.Errorf("%s=%q: want reboot, poweroff or shell", bootcfg.ParamAfter, after)
}

// execShell replaces the installer with a shell on the console.
func execShell() error {
	var err error
	for _, sh := range []string{"/bin/defaultsh", "/bin/sh"} {
		err = syscall.Exec(sh, []string{sh}, os.Environ())
	}
	return fmt.Errorf("shell: %w", err)
}

// consoleNames returns the device names of the console= parameters
// ("ttyS0,115200n8" → "ttyS0"), in order, without duplicates.
func consoleNames(cmdline string) []string {
	var names []string
	seen := map[string]bool{}
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "console=")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(v, ",")
		if name != "" && !strings.Contains(name, "/") && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}

// cmdlineValue returns the value of the last key=value on the command line.
func cmdlineValue(cmdline, key string) (string, bool) {
	val, found := "", false
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			val, found = v, true
		}
	}
	return val, found
}

// openConsoles opens /dev/<name> for each console; when none opens, the
// output is fallback.
func openConsoles(names []string, fallback io.Writer) (io.Writer, func()) {
	var ws []io.Writer
	var fs []*os.File
	for _, n := range names {
		f, err := os.OpenFile("/dev/"+n, os.O_WRONLY|syscall.O_NOCTTY, 0)
		if err != nil {
			continue
		}
		ws = append(ws, f)
		fs = append(fs, f)
	}
	closeAll := func() {
		for _, f := range fs {
			f.Close()
		}
		fs = nil
	}
	if len(ws) == 0 {
		return fallback, closeAll
	}
	return allWriter(ws), closeAll
}

// allWriter writes to every writer, even when one fails (a console
// without a device behind it must not hide the others).
type allWriter []io.Writer

func (a allWriter) Write(p []byte) (int, error) {
	for _, w := range a {
		w.Write(p)
	}
	return len(p), nil
}

// drainConsole waits (at most 3 s) until the consoles have sent what was
// written to them: a serial console's last lines are still in the kernel's
// tty buffer when the reboot syscall runs, and a power-off would drop them.
func drainConsole(out io.Writer) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, w := range []io.Writer{out, os.Stdout, os.Stderr} {
			if f, ok := w.(*os.File); ok {
				_ = unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1) // tcdrain; not a tty: ENOTTY, ignored
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}
