package image

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/kernel"
	"github.com/u-root/u-root/pkg/cpio"
)

// testKernel is this machine's newest Debian kernel (found at run time: a
// fresh machine gets whatever Debian ships that day).
// "" when there is none: requireFile(t, testKernel) then fails under CI.
var testKernel, testKernelVersion = newestKernel()

func newestKernel() (string, string) {
	k, _ := kernel.Default()
	return k.Image, k.Version
}

// readyLine is what the test initrd's /init prints on the console.
const readyLine = "nixlos-installer test ready"

const testManifest = `{"version":1,"flake":{"dir":"/etc/nixlos/flake","rev":"","narHash":""},"hosts":{"server":{"system":"x86_64-linux","disko":{}},"laptop":{"system":"x86_64-linux","disko":{}}}}`

// testAgeKey is a syntactically valid age identity used only in tests.
const testAgeKey = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n"

func requireFile(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if p == "" { // testKernel on a machine without a kernel
			testenv.Kernel(t)
		}
	}
	testenv.Files(t, paths...)
}

// writeTestInitrd writes a small initrd: a plain newc archive with a static
// busybox and an /init that prints readyLine and powers off, followed by a
// zstd-compressed archive holding the manifest (and the key when withKey).
func writeTestInitrd(t testing.TB, dir string, withKey bool) string {
	t.Helper()
	requireFile(t, "/bin/busybox")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	init := "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n" +
		"/bin/busybox echo \"cmdline: $(/bin/busybox cat /proc/cmdline)\" > /dev/console\n" +
		"/bin/busybox echo '" + readyLine + "' > /dev/console\n/bin/busybox poweroff -f\n"
	base := []cpio.Record{
		cpio.Directory("bin", 0o755), cpio.Directory("dev", 0o755), cpio.Directory("proc", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticFile("bin/busybox", string(bb), 0o755),
		cpio.StaticFile("init", init, 0o755),
	}
	extra := []cpio.Record{
		cpio.Directory("etc", 0o755), cpio.Directory("etc/nixlos", 0o755),
		cpio.StaticFile("etc/nixlos/manifest.json", testManifest, 0o644),
	}
	if withKey {
		extra = append(extra, cpio.StaticFile("etc/nixlos/age.key", testAgeKey, 0o600))
	}
	var out bytes.Buffer
	out.Write(newcArchive(t, base))
	zw, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(newcArchive(t, extra))
	zw.Close()
	p := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newcArchive(t testing.TB, recs []cpio.Record) []byte {
	t.Helper()
	var b bytes.Buffer
	w := cpio.Newc.Writer(&b)
	for i := range recs {
		recs[i] = cpio.MakeReproducible(recs[i])
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testSpec is a spec with the Debian kernel and a fresh test initrd.
func testSpec(t testing.TB, withKey bool) Spec {
	t.Helper()
	requireFile(t, testKernel)
	return Spec{
		Kernel: testKernel, Initrd: writeTestInitrd(t, t.TempDir(), withKey),
		Hosts: []string{"server", "laptop"}, Timeout: time.Second, Epoch: 1700000000,
	}
}

// bootQEMU runs qemu-system-x86_64 (TCG, no reboot, serial on stdout) with
// args and waits for want on the serial console. It returns the seconds it
// took and fails the test with the console tail on timeout. The test
// initrd prints its kernel command line first: bootQEMU checks it carries the
// serial console argument, i.e. a menu entry of ours was booted.
func bootQEMU(t *testing.T, args []string, want string, limit time.Duration) float64 {
	t.Helper()
	testenv.Tools(t, "qemu-system-x86_64")
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	base := []string{"-accel", "tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-vga", "std"}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", append(base, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	var tail []string
	var cmdline string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		tail = append(tail, line)
		if len(tail) > 40 {
			tail = tail[1:]
		}
		if strings.HasPrefix(line, "cmdline: ") {
			cmdline = line
		}
		if strings.Contains(line, want) {
			if !strings.Contains(cmdline, "console=ttyS0,115200") {
				t.Errorf("booted kernel command line %q lacks the serial console", cmdline)
			}
			return time.Since(start).Seconds()
		}
	}
	io.Copy(io.Discard, stdout)
	t.Fatalf("no %q on the serial console within %v; last lines:\n%s", want, limit, strings.Join(tail, "\n"))
	return 0
}
