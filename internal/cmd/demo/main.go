// Command demo is `make demo`: the whole nixlos job end to end on this
// machine. It prepares the example flake with a fresh age key (demoprep),
// builds the hybrid ISO with that key embedded (package pipeline, as
// `mkiso build`), boots it in QEMU TCG onto a blank 8 GiB virtio disk with
// nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff,
// streaming the serial console, and then boots a read-back VM that prints
// what was installed: partitions with their GPT names, filesystems, the
// LUKS and LVM volumes, the age key's path and mode (never the key), the
// installed system's store path and the install log's last lines.
//
//	go run ./internal/cmd/demo [--out build/demo] [--quiet]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/pipeline"
	"github.com/nixlos/nixlos/vmtest"
)

func main() {
	cli.Exit("demo", run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: demo [--out DIR] [--quiet]

Builds the nixlos ISO from examples/nix-los with a fresh demo age key,
installs host laptop from it in a QEMU TCG virtual machine onto a blank
8 GiB disk, then reads the disk back in a second VM and prints what is on it.`

// demoCmdline is what the demo ISO boots with.
const demoCmdline = "nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff"

func run(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("demo", usage, stdout)
	out := fs.String("out", "build/demo", "work directory (flake, key, ISO, disk image)")
	quiet := fs.Bool("quiet", false, "do not stream the installer's serial console")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return cli.Usagef("demo takes no arguments (fix: demo --out DIR)")
	}
	if why := vmtest.Available(); why != "" {
		return cli.BadInput("qemu", "run 'make deps' (qemu-system-x86, a kernel in /boot)", "cannot run VMs: %s", why)
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	d := &demo{dir: dir, w: stdout, quiet: *quiet, start: time.Now()}
	return d.run(context.Background())
}

type demo struct {
	dir   string
	w     io.Writer
	quiet bool
	start time.Time
	times []string
}

func (d *demo) step(name string, fn func() error) error {
	fmt.Fprintf(d.w, "\n==> %s\n", name)
	t := time.Now()
	err := fn()
	el := time.Since(t).Round(100 * time.Millisecond)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d.times = append(d.times, fmt.Sprintf("  %-38s %s", name, el))
	return nil
}

func (d *demo) run(ctx context.Context) error {
	flakeDir := filepath.Join(d.dir, "flake")
	keyFile := filepath.Join(d.dir, "age.key")
	var res *pipeline.Result
	if err := d.step("prepare flake and age key", func() error {
		cmd := exec.CommandContext(ctx, "go", "run", "./internal/cmd/demoprep", "--out", d.dir)
		cmd.Stdout, cmd.Stderr = d.w, d.w
		return cmd.Run()
	}); err != nil {
		return err
	}
	if err := d.step("build the ISO (mkiso build)", func() error {
		prof, err := pipeline.NewProfile(pipeline.Options{
			Flake: flakeDir, Out: filepath.Join(d.dir, "out"), AgeKey: keyFile,
			Formats: []image.Format{image.FormatISO}, Cmdline: demoCmdline, Version: "demo",
		})
		if err != nil {
			return err
		}
		res, err = pipeline.Build(ctx, prof, d.w)
		return err
	}); err != nil {
		return err
	}
	iso := filepath.Join(res.Out, image.ISOName)
	disk := filepath.Join(d.dir, "disk.img")
	os.Remove(disk)
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(disk, 8<<30); err != nil {
		return err
	}

	var bootReady, bootDone time.Duration
	if err := d.step("boot the ISO and install (QEMU TCG)", func() error {
		fmt.Fprintf(d.w, "kernel command line (default menu entry): %s %s\n", image.ConsoleArgs, demoCmdline)
		var stream io.Writer
		if !d.quiet {
			stream = &prefixWriter{w: d.w, prefix: "  | "}
		}
		vm, err := vmtest.Start(vmtest.Options{
			Name: "demo", CDROM: iso, Disks: []vmtest.Disk{{Path: disk}},
			MemoryMiB: 2048, Stream: stream, Timeout: 20 * time.Minute, LogDir: d.dir,
		})
		if err != nil {
			return err
		}
		defer vm.Kill()
		if _, err := vm.Expect(ctx, "nixlos-installer demo ready", 5*time.Minute); err != nil {
			return err
		}
		bootReady = vm.Elapsed()
		m, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: install (complete host=laptop|failed: [^\r\n]*\r?\n)`), 15*time.Minute)
		if err != nil {
			return err
		}
		bootDone = vm.Elapsed()
		if !strings.Contains(m[0], "complete") {
			vm.Expect(ctx, "starting a shell", 30*time.Second)
			return fmt.Errorf("the installer failed (serial log %s)", vm.LogPath())
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := vm.Wait(wctx); err != nil {
			return fmt.Errorf("QEMU did not exit after the power-off: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}
	var report string
	if err := d.step("read the disk back (second VM)", func() error {
		key, err := agekey.Load(keyFile)
		if err != nil {
			return err
		}
		sops, err := os.ReadFile(filepath.Join(flakeDir, "secrets/secrets.yaml"))
		if err != nil {
			return err
		}
		pass, err := agekey.Value(key, sops, "secrets.yaml", "luks.crypted")
		if err != nil {
			return err
		}
		ageKeyFile := res.Manifest.Hosts["laptop"].AgeKeyFile
		report, err = d.readBack(ctx, disk, pass, ageKeyFile)
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintf(d.w, "\n==> what is on the disk (%s)\n%s", disk, report)
	fmt.Fprintf(d.w, "\n==> times\n%s\n", strings.Join(d.times, "\n"))
	fmt.Fprintf(d.w, "  %-38s %.1f s\n  %-38s %.1f s\n  %-38s %s\n", "power-on → installer ready", bootReady.Seconds(),
		"power-on → install complete", bootDone.Seconds(), "demo total", time.Since(d.start).Round(100*time.Millisecond))
	return nil
}

// readBackScript opens the installed disk and prints what is on it; it never
// prints the age key or the passphrase.
const readBackScript = `modprobe -a dm_mod dm_crypt ext4 vfat nls_cp437 nls_iso8859_1 2>/dev/null || true
echo "== partitions (GPT: number, start, size, type, name)"
sfdisk --dump /dev/vda | busybox grep '^/dev' | busybox sed 's/, uuid=[^,]*//'
cryptsetup open --key-file /etc/nixlos/readback.pass /dev/vda2 crypted
lvm vgchange -a y pool >/dev/null
echo "== filesystems"
blkid /dev/vda1 /dev/vda2 /dev/mapper/crypted /dev/pool/root /dev/pool/home /dev/pool/swap | busybox sed 's/ PARTUUID="[^"]*"//; s/ BLOCK_SIZE="[^"]*"//'
echo "== LUKS"
cryptsetup status crypted | busybox grep -E 'type|cipher|device|size'
echo "== LVM"
lvm lvs -o lv_name,vg_name,lv_size,lv_attr pool
mkdir -p /t && mount /dev/pool/root /t && mount /dev/pool/home /t/home
mount -t vfat -o ro,iocharset=iso8859-1 /dev/vda1 /t/boot
echo "== age key"
busybox stat -c '%n  mode %a  owner %U  %s bytes' /t$AGEKEY
busybox stat -c '%n  mode %a' $(busybox dirname /t$AGEKEY)
echo "== installed system"
echo "/nix/var/nix/profiles/system -> $(busybox readlink /t/nix/var/nix/profiles/system) -> $(busybox readlink /t/nix/var/nix/profiles/system-1-link)"
echo "store paths in /nix/store: $(ls /t/nix/store | busybox wc -l)"
echo "== /etc/nixos"
ls /t/etc/nixos
echo "== install log (/var/log/nixlos-install.log, last lines)"
busybox tail -n 12 /t/var/log/nixlos-install.log
echo "== mounted"
busybox df -h /t /t/home /t/boot | busybox sed 's|/t|/mnt|'
umount /t/boot /t/home /t
lvm vgchange -a n pool >/dev/null
cryptsetup close crypted
`

func (d *demo) readBack(ctx context.Context, disk string, pass []byte, ageKeyFile string) (string, error) {
	nb := make([]byte, 8)
	rand.Read(nb)
	nonce := hex.EncodeToString(nb)
	uinit := fmt.Sprintf(`export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bbin AGEKEY=%s
echo "@@BEGIN-%[2]s@@"
/bin/sh -e /etc/nixlos/readback.sh </dev/null 2>&1
echo "@@END-%[2]s rc=$?@@"
/bin/busybox sync
/bin/busybox poweroff -f
`, ageKeyFile, nonce)
	work, err := os.MkdirTemp(d.dir, "readback-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work) // the initrd holds the LUKS passphrase
	initrd, _, err := initramfs.Build(ctx, initramfs.Spec{
		Output: filepath.Join(work, "initrd"), Version: "demo", UinitScript: uinit, // same version: the installer binary comes from the cache
		Files: []initramfs.File{
			{Path: "etc/nixlos/readback.sh", Data: []byte(readBackScript), Mode: 0o755},
			{Path: "etc/nixlos/readback.pass", Data: pass, Mode: 0o600},
		},
	}, io.Discard)
	if err != nil {
		return "", err
	}
	os.Chmod(initrd, 0o600)
	vm, err := vmtest.Start(vmtest.Options{
		Name: "readback", Kernel: vmtest.DefaultKernel(), Initrd: initrd,
		Append: "console=ttyS0 loglevel=3", Disks: []vmtest.Disk{{Path: disk}},
		Timeout: 10 * time.Minute, LogDir: work,
	})
	if err != nil {
		return "", err
	}
	defer vm.Kill()
	m, err := vm.Expect(ctx, regexp.MustCompile(`@@END-`+nonce+` rc=(\d+)@@`), 8*time.Minute)
	if err != nil {
		return "", err
	}
	console := strings.ReplaceAll(vm.Console(), "\r", "")
	i := strings.Index(console, "@@BEGIN-"+nonce+"@@\n")
	j := strings.Index(console, "@@END-"+nonce)
	if i < 0 || j < i {
		return "", fmt.Errorf("read-back output not found")
	}
	out := console[i+len("@@BEGIN-"+nonce+"@@\n") : j]
	out = regexp.MustCompile(`(?m)^\[ *[0-9.]+\] .*\n`).ReplaceAllString(out, "") // kernel messages
	if bytes.Contains([]byte(out), pass) {
		return "", fmt.Errorf("read-back output would show the passphrase; not printed")
	}
	if m[1] != "0" {
		return out, fmt.Errorf("read-back script failed (rc %s):\n%s", m[1], out)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vm.Wait(wctx)
	return out, nil
}

// prefixWriter prefixes every line (the streamed serial console).
type prefixWriter struct {
	w      io.Writer
	prefix string
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var buf bytes.Buffer
	for _, c := range bytes.ReplaceAll(b, []byte("\r"), nil) {
		if !p.mid {
			buf.WriteString(p.prefix)
			p.mid = true
		}
		buf.WriteByte(c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.w.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
