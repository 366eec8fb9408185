// Package vmtest runs QEMU (TCG, no KVM) virtual machines for tests and
// demos: boot a kernel+initrd, a CD ISO, a USB stick image or a virtio disk,
// under SeaBIOS or OVMF (UEFI), with extra virtio disks, user-mode
// networking (TFTP/PXE via QEMU's iPXE ROMs) or a tap device; the serial
// console is captured to a log file and can be matched and typed into.
//
// Typical test:
//
//	vmtest.SkipUnlessVM(t)                 // -short, or no qemu/kernel: skip with the reason
//	vm := vmtest.StartT(t, vmtest.Options{
//		Kernel: vmtest.DefaultKernel(),
//		Initrd: initrd,
//		Append: "console=ttyS0",
//		Disks:  []vmtest.Disk{{Path: vmtest.NewDisk(t, "disk.img", 1<<30)}},
//	})
//	vm.Expect(ctx, "nixlos-installer", 2*time.Minute)          // substring
//	vm.Expect(ctx, regexp.MustCompile(`ready`), time.Minute)     // or a regexp
//	vm.Send("laptop\n")                                          // type on ttyS0
//	vm.Wait(ctx)                                                 // QEMU exits after guest poweroff (-no-reboot)
//
// StartT kills QEMU when the test ends (t.Cleanup); Start is the same for
// non-test callers (call Kill). Boot sources are mutually exclusive:
// Kernel (QEMU -kernel/-initrd/-append), CDROM, USB, BootDisk, or Net with
// PXE. UEFI uses /usr/share/ovmf/OVMF.fd as -bios (no persistent vars).
// Extra disks appear as virtio-blk devices in order (/dev/vda, /dev/vdb…
// after BootDisk when that is virtio too), with their Serial as
// /dev/disk/by-id/virtio-<serial>.
//
// Guest checks: RunCheck builds a test initramfs (package initramfs) whose
// uinit runs a shell script, prints its output between markers on the
// serial console and powers off; the host gets the output and exit code.
// The partitioner's LUKS/LVM/md apply tests use it (this host kernel has no
// device-mapper or md):
//
//	res := vmtest.RunCheck(t, vmtest.Check{
//		Files:  []initramfs.File{{Path: "etc/layout.json", Data: layout}},
//		Disks:  []vmtest.Disk{{Path: vmtest.NewDisk(t, "main.img", 8<<30)}},
//		Script: "installer partition --layout /etc/layout.json --disk main=/dev/vda --yes\n" +
//			"lsblk -J; cryptsetup status crypted; lvm lvs --reportformat json\n",
//	})
//	// res.ExitCode, res.Output (stdout+stderr of the script); the host can
//	// also read main.img back after the guest powered off.
//
// The guest has the installer image's tools (util-linux, cryptsetup, lvm,
// mdadm, mkfs.*, btrfs, kmod, nix), /bin/sh = dash, u-root's Go commands
// and busybox applets (`busybox grep -E`); modules load on demand (kmod).
// The installer in the test initramfs is built from the working tree.
package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Disk is a virtual disk backed by an image file.
type Disk struct {
	Path     string // image file (created by the test, e.g. with NewDisk)
	Format   string // "raw" (default) or "qcow2"
	Serial   string // virtio serial → /dev/disk/by-id/virtio-<Serial>
	ReadOnly bool
}

// Net is the VM's network card.
type Net struct {
	// Model is the NIC (default "e1000", whose ROM is iPXE).
	Model string
	// MAC address (default QEMU's 52:54:00:12:34:56).
	MAC string
	// TFTP serves this host directory on user-mode networking; BootFile is
	// the DHCP boot file name (e.g. "boot.ipxe" or "undionly.kpxe").
	TFTP, BootFile string
	// Tap, when set, uses this existing tap device instead of user-mode
	// networking (e.g. inside a network namespace with a PXE server).
	Tap string
	// PXE boots from this NIC (bootindex 0).
	PXE bool
}

// Options describe one VM.
type Options struct {
	// Name labels log lines and the log file (default "vm").
	Name string
	// QEMU binary (default qemu-system-x86_64).
	QEMU string

	// Kernel, Initrd, Append: direct kernel boot (SeaBIOS or OVMF loads it).
	Kernel, Initrd, Append string
	// CDROM boots an ISO image as an IDE CD.
	CDROM string
	// USB boots a raw disk image as a USB stick (qemu-xhci + usb-storage).
	USB string
	// BootDisk boots a raw disk image as a virtio disk.
	BootDisk string
	// UEFI boots with OVMF instead of SeaBIOS. OVMF overrides the firmware
	// file (default /usr/share/ovmf/OVMF.fd).
	UEFI bool
	OVMF string

	// Disks are extra virtio disks.
	Disks []Disk
	// USBDisks are extra removable USB sticks (usb-storage on qemu-xhci):
	// /dev/sda, /dev/sdb… in a guest without other SCSI disks.
	USBDisks []Disk
	// Net adds a NIC; nil means no network.
	Net *Net
	// MemoryMiB is the RAM size (default 1024).
	MemoryMiB int
	// CPUs (default 1).
	CPUs int
	// DefaultCPU runs QEMU's default CPU model (qemu64, no RDRAND) instead
	// of -cpu max: early getrandom() then blocks for a long time, as on
	// hypervisors whose default CPU lacks a hardware RNG.
	DefaultCPU bool
	// AllowReboot lets a guest reboot; by default QEMU runs with -no-reboot
	// so a guest reboot or poweroff ends QEMU.
	AllowReboot bool
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string

	// LogDir holds the serial log (default: a temp dir; StartT uses t.TempDir()).
	LogDir string
	// Stream receives the serial console as it arrives (optional).
	Stream io.Writer
	// Timeout bounds the VM's whole life (default 15 minutes); QEMU is
	// killed when it expires.
	Timeout time.Duration
}

// DefaultOVMF is Debian's OVMF firmware image.
const DefaultOVMF = "/usr/share/ovmf/OVMF.fd"

// VM is a running QEMU.
type VM struct {
	opts    Options
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logPath string
	start   time.Time

	mu       sync.Mutex
	out      []byte // whole console so far
	pos      int    // Expect resumes here
	changed  chan struct{}
	readErr  error // set when the console closed
	readDone chan struct{}

	waitOnce sync.Once
	waitErr  error
	exited   chan struct{}
	cancel   context.CancelFunc
}

// Args returns the QEMU command line (without the binary) for opts.
func (o Options) Args() ([]string, error) {
	mem := o.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	cpus := o.CPUs
	if cpus == 0 {
		cpus = 1
	}
	// -cpu max gives the guest RDRAND, which the Debian kernel trusts to
	// seed its random pool at boot, as on real hardware. On the default
	// qemu64 CPU the pool stays uninitialised for minutes under TCG and a
	// getrandom() call blocks: measured, 1 boot in 8 of a bare u-root
	// image hung after init; 0 in 10 with -cpu max.
	args := []string{"-accel", "tcg"}
	if !o.DefaultCPU {
		args = append(args, "-cpu", "max")
	}
	args = append(args, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-display", "none", "-monitor", "none",
		"-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0")
	if !o.AllowReboot {
		args = append(args, "-no-reboot")
	}
	if o.UEFI {
		fw := o.OVMF
		if fw == "" {
			fw = DefaultOVMF
		}
		args = append(args, "-bios", fw)
	}
	sources := 0
	for _, s := range []string{o.Kernel, o.CDROM, o.USB, o.BootDisk} {
		if s != "" {
			sources++
		}
	}
	if o.Net != nil && o.Net.PXE {
		sources++
	}
	if sources > 1 {
		return nil, errors.New("vmtest: give one boot source: Kernel, CDROM, USB, BootDisk or Net.PXE")
	}
	if sources == 0 {
		return nil, errors.New("vmtest: no boot source (Kernel, CDROM, USB, BootDisk or Net.PXE)")
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel)
		if o.Initrd != "" {
			args = append(args, "-initrd", o.Initrd)
		}
		if o.Append != "" {
			args = append(args, "-append", o.Append)
		}
	} else if o.Initrd != "" || o.Append != "" {
		return nil, errors.New("vmtest: Initrd and Append need Kernel")
	}
	if o.CDROM != "" {
		args = append(args, "-drive", "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file="+o.CDROM,
			"-device", "ide-cd,drive=cd0,bootindex=0")
	}
	if o.USB != "" {
		args = append(args, "-drive", "if=none,id=usb0,format=raw,file="+o.USB,
			"-device", "qemu-xhci,id=xhci", "-device", "usb-storage,bus=xhci.0,drive=usb0,removable=on,bootindex=0")
	}
	if o.BootDisk != "" {
		args = append(args, "-drive", "if=none,id=boot0,format=raw,file="+o.BootDisk,
			"-device", "virtio-blk-pci,drive=boot0,bootindex=0")
	}
	for i, d := range o.Disks {
		if d.Path == "" {
			return nil, fmt.Errorf("vmtest: disk %d has no Path", i)
		}
		f := d.Format
		if f == "" {
			f = "raw"
		}
		drive := fmt.Sprintf("if=none,id=disk%d,format=%s,file=%s", i, f, d.Path)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		dev := fmt.Sprintf("virtio-blk-pci,drive=disk%d", i)
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		args = append(args, "-drive", drive, "-device", dev)
	}
	if n := o.Net; n != nil {
		model := n.Model
		if model == "" {
			model = "e1000"
		}
		var netdev string
		if n.Tap != "" {
			netdev = "tap,id=n0,ifname=" + n.Tap + ",script=no,downscript=no"
		} else {
			netdev = "user,id=n0"
			if n.TFTP != "" {
				netdev += ",tftp=" + n.TFTP
			}
			if n.BootFile != "" {
				netdev += ",bootfile=" + n.BootFile
			}
		}
		dev := model + ",netdev=n0"
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		if n.PXE {
			dev += ",bootindex=0"
		}
		args = append(args, "-netdev", netdev, "-device", dev)
	} else {
		args = append(args, "-nic", "none")
	}
	args = append(args, usbDiskArgs(o)...)
	return append(args, o.ExtraArgs...), nil
}

// Start starts QEMU. The caller must call Kill (or Wait) when done.
func Start(opts Options) (*VM, error) {
	args, err := opts.Args()
	if err != nil {
		return nil, err
	}
	qemu := opts.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	if opts.Name == "" {
		opts.Name = "vm"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 15 * time.Minute
	}
	if opts.LogDir == "" {
		d, err := os.MkdirTemp("", "vmtest-")
		if err != nil {
			return nil, err
		}
		opts.LogDir = d
	}
	logPath := filepath.Join(opts.LogDir, opts.Name+"-serial.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		logf.Close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		logf.Close()
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	vm := &VM{opts: opts, cmd: cmd, stdin: stdin, logPath: logPath, changed: make(chan struct{}),
		readDone: make(chan struct{}), exited: make(chan struct{}), cancel: cancel}
	if err := cmd.Start(); err != nil {
		cancel()
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", qemu, err)
	}
	vm.start = time.Now()
	go func() {
		defer close(vm.readDone)
		defer logf.Close()
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			if n > 0 {
				logf.Write(buf[:n])
				if opts.Stream != nil {
					opts.Stream.Write(buf[:n])
				}
				vm.mu.Lock()
				vm.out = append(vm.out, buf[:n]...)
				close(vm.changed)
				vm.changed = make(chan struct{})
				vm.mu.Unlock()
			}
			if err != nil {
				vm.mu.Lock()
				vm.readErr = err
				close(vm.changed)
				vm.changed = make(chan struct{})
				vm.mu.Unlock()
				return
			}
		}
	}()
	go func() {
		<-vm.readDone
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		vm.waitErr = err
		cancel()
		close(vm.exited)
	}()
	return vm, nil
}

// StartT starts QEMU for a test: the serial log goes to t.TempDir() (and,
// with -v, to the test log line by line); QEMU is killed when the test
// ends, and on failure the log's path is reported.
func StartT(t testing.TB, opts Options) *VM {
	t.Helper()
	if opts.LogDir == "" {
		opts.LogDir = t.TempDir()
	}
	var lw *lineWriter
	if testing.Verbose() && opts.Stream == nil {
		lw = &lineWriter{t: t, prefix: opts.Name}
		opts.Stream = lw
	}
	vm, err := Start(opts)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	t.Logf("vmtest: %s: %s %s", vm.opts.Name, "qemu-system-x86_64", strings.Join(vm.cmd.Args[1:], " "))
	t.Cleanup(func() {
		vm.Kill()
		if lw != nil {
			lw.flush()
		}
		if t.Failed() {
			t.Logf("vmtest: %s serial log: %s", vm.opts.Name, vm.logPath)
		}
	})
	return vm
}

// lineWriter sends whole lines to t.Logf.
type lineWriter struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte
	done   bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return len(p), nil
	}
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Logf("%s| %s", l.prefix, strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Logf("%s| %s", l.prefix, string(l.buf))
	}
	l.buf, l.done = nil, true
}

// Expect waits until the console output after the previous match contains
// pattern — a string (substring) or a *regexp.Regexp — and returns the
// match (with submatches for a regexp). It fails when timeout passes, ctx
// ends, or QEMU exits first; the error quotes the console's last lines.
func (vm *VM) Expect(ctx context.Context, pattern any, timeout time.Duration) ([]string, error) {
	var find func([]byte) (int, int, []string)
	switch p := pattern.(type) {
	case string:
		find = func(b []byte) (int, int, []string) {
			i := bytes.Index(b, []byte(p))
			if i < 0 {
				return -1, -1, nil
			}
			return i, i + len(p), []string{p}
		}
	case *regexp.Regexp:
		find = func(b []byte) (int, int, []string) {
			m := p.FindSubmatchIndex(b)
			if m == nil {
				return -1, -1, nil
			}
			var subs []string
			for i := 0; i < len(m); i += 2 {
				if m[i] < 0 {
					subs = append(subs, "")
				} else {
					subs = append(subs, string(b[m[i]:m[i+1]]))
				}
			}
			return m[0], m[1], subs
		}
	default:
		return nil, fmt.Errorf("vmtest: Expect wants a string or *regexp.Regexp, not %T", pattern)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		vm.mu.Lock()
		_, end, subs := find(vm.out[vm.pos:])
		if end >= 0 {
			vm.pos += end
			vm.mu.Unlock()
			return subs, nil
		}
		ch, rerr := vm.changed, vm.readErr
		vm.mu.Unlock()
		if rerr != nil {
			<-vm.exited
			return nil, fmt.Errorf("vmtest: %s: QEMU exited (%v) before %q appeared; console tail:\n%s", vm.opts.Name, vm.waitErr, fmt.Sprint(pattern), vm.Tail(20))
		}
		select {
		case <-ch:
		case <-timer.C:
			return nil, fmt.Errorf("vmtest: %s: %q not seen within %s; console tail:\n%s", vm.opts.Name, fmt.Sprint(pattern), timeout, vm.Tail(20))
		case <-ctx.Done():
			return nil, fmt.Errorf("vmtest: %s: waiting for %q: %w", vm.opts.Name, fmt.Sprint(pattern), ctx.Err())
		}
	}
}

// Send types text on the serial console (the guest's ttyS0).
func (vm *VM) Send(text string) error {
	_, err := io.WriteString(vm.stdin, text)
	return err
}

// Wait waits for QEMU to exit (e.g. after the guest powered off with
// -no-reboot) and returns its exit error; ctx bounds the wait.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.exited:
		return vm.waitErr
	case <-ctx.Done():
		return fmt.Errorf("vmtest: %s: still running: %w; console tail:\n%s", vm.opts.Name, ctx.Err(), vm.Tail(20))
	}
}

// Kill stops QEMU (and its process group) if it still runs, and waits.
func (vm *VM) Kill() {
	select {
	case <-vm.exited:
		return
	default:
	}
	vm.cancel()
	<-vm.exited
}

// Console returns all serial output so far.
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return string(vm.out)
}

// Tail returns the last n lines of the console.
func (vm *VM) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(vm.Console(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogPath is the serial log file.
func (vm *VM) LogPath() string { return vm.logPath }

// Elapsed is the time since QEMU started (power-on).
func (vm *VM) Elapsed() time.Duration { return time.Since(vm.start) }

// NewDisk creates a sparse raw disk image of size bytes in t.TempDir().
func NewDisk(t testing.TB, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// FileSHA256 is the hex SHA-256 of a file: a virtual disk's bytes, to
// show a test that a disk was (not) written.
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
