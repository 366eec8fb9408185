// Command demo is `make demo`: the whole nixlos job end to end on this
// machine. It prepares the example flake with a fresh age key (demoprep),
// builds the hybrid ISO with that key embedded and the hosts' closures on
// it (package pipeline, as `mkiso build --closure`), boots it under UEFI
// in QEMU TCG (QEMU's default CPU model, no network card) onto a blank
// 8 GiB virtio disk with nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto
// nixlos.after=poweroff, streaming the serial console; then it boots the
// disk alone under UEFI, types the LUKS passphrase at the installed
// system's prompt and shows what the system reports: its booted line, its
// mounts and whether its age key is there (never the key).
//
//	go run ./internal/tools/demo [--out build/demo] [--quiet]
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/fsutil"
	"github.com/nixlos/nixlos/pipeline"
	"github.com/nixlos/nixlos/vmtest"
)

func main() {
	cli.Exit("demo", run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: demo [--out DIR] [--quiet]

Builds the nixlos ISO (with closures) from examples/nix-los with a fresh
demo age key, installs host laptop from it in a QEMU TCG virtual machine
(UEFI, no network) onto a blank 8 GiB disk, then boots that disk alone and
shows the installed system coming up.`

// demoCmdline is what the demo ISO boots with.
var demoCmdline = bootcfg.Render(bootcfg.Cmdline{Host: "laptop", Auto: true, Disk: "auto", After: bootcfg.AfterPoweroff})

func run(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("demo", usage, stdout)
	out := fs.String("out", "build/demo", "work directory (flake, key, ISO, disk image)")
	quiet := fs.Bool("quiet", false, "do not stream the installer's serial console")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errs.Usagef("demo takes no arguments (fix: demo --out DIR)")
	}
	if why := vmtest.Available(); why != "" {
		return errs.BadInput("qemu", "run 'make deps' (qemu-system-x86, a kernel in /boot)", "cannot run VMs: %s", why)
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
	d.times = append(d.times, fmt.Sprintf("  %-52s %s", name, el))
	return nil
}

func (d *demo) run(ctx context.Context) error {
	flakeDir := filepath.Join(d.dir, "flake")
	keyFile := filepath.Join(d.dir, "age.key")
	var res *pipeline.Result
	if err := d.step("prepare flake and age key", func() error {
		cmd := exec.CommandContext(ctx, "go", "run", "./internal/tools/demoprep", "--out", d.dir)
		cmd.Stdout, cmd.Stderr = d.w, d.w
		return cmd.Run()
	}); err != nil {
		return err
	}
	if err := d.step("build the ISO (mkiso build)", func() error {
		prof, err := pipeline.NewProfile(pipeline.Options{
			Flake: flakeDir, Out: filepath.Join(d.dir, "out"), AgeKey: keyFile,
			Formats: []image.Format{image.FormatISO}, Cmdline: demoCmdline, Version: "demo",
			Closure: true,
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
			stream = consoleWriter(d.w)
		}
		vm, err := vmtest.Start(vmtest.Options{
			Name: "demo", CDROM: iso, Disks: []vmtest.Disk{{Path: disk}}, UEFI: true, DefaultCPU: true,
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
	var booted vmtest.Booted
	if err := d.step("boot the installed disk alone (UEFI, no installer)", func() error {
		pass, err := os.ReadFile(filepath.Join(d.dir, "luks-passphrase"))
		if err != nil {
			return fmt.Errorf("the LUKS passphrase demoprep wrote: %w", err)
		}
		pass = bytes.TrimRight(pass, "\n")
		var stream io.Writer
		if !d.quiet {
			stream = consoleWriter(d.w)
		}
		vm, err := vmtest.Start(vmtest.Options{
			Name: "firstboot", BootDisk: disk, UEFI: true, DefaultCPU: true,
			MemoryMiB: 1024, Stream: stream, Timeout: 10 * time.Minute, LogDir: d.dir,
		})
		if err != nil {
			return err
		}
		defer vm.Kill()
		booted, err = vmtest.BootInstalled(ctx, vm, pass, 8*time.Minute)
		if err != nil {
			return fmt.Errorf("%w (serial log %s)", err, vm.LogPath())
		}
		if booted.Host != "laptop" || booted.Generation != 1 || booted.AgeKey != "present" {
			return fmt.Errorf("the installed system came up as host=%s generation=%d, age key %s; want laptop, 1, present", booted.Host, booted.Generation, booted.AgeKey)
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(d.w, "\n==> the installed system reports (%s)\n%s\n", disk, booted.Report)
	fmt.Fprintf(d.w, "\n==> times\n%s\n", strings.Join(d.times, "\n"))
	fmt.Fprintf(d.w, "  %-52s %.1f s\n  %-52s %.1f s\n  %-52s %.1f s (%d passphrase prompt)\n  %-52s %s\n",
		"power-on → installer ready", bootReady.Seconds(),
		"power-on → install complete", bootDone.Seconds(),
		"power-on → booted (installed disk)", booted.Elapsed.Seconds(), booted.Prompts,
		"demo total", time.Since(d.start).Round(100*time.Millisecond))
	return nil
}

// consoleWriter shows the streamed serial console: every line prefixed,
// carriage returns dropped.
func consoleWriter(w io.Writer) io.Writer {
	return dropCR{fsutil.NewPrefixWriter(w, "  | ")}
}

// dropCR removes carriage returns from what it writes to w.
type dropCR struct{ w io.Writer }

func (d dropCR) Write(b []byte) (int, error) {
	if _, err := d.w.Write(bytes.ReplaceAll(b, []byte("\r"), nil)); err != nil {
		return 0, err
	}
	return len(b), nil
}
