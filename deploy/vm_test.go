package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/pipeline"
	"github.com/nixlos/nixlos/vmtest"
)

// syncBuffer is a buffer the deploy writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}

// TestDeployVM is issue 12's acceptance test: a QEMU guest (UEFI) runs a
// plain Linux — the Debian kernel with a busybox + dropbear initramfs —
// reachable over user-net port forwarding. A run against a wrong host key
// is refused and one with a wrong age key fails before connecting; then
// mkiso deploy installs the demo flake's laptop host (built with
// --closure) onto the guest's blank disk through kexec and returns after
// the installer reported "install complete"; the guest then boots its disk.
func TestDeployVM(t *testing.T) {
	testenv.Short(t, "deploy VM test (demo build, guest, kexec, install)")
	vmtest.SkipUnlessVM(t)
	testenv.Tools(t, "dropbear", "dropbearkey", "busybox", "ldd", "nix", "git")
	testenv.Files(t, vmtest.DefaultOVMF)
	ctx := context.Background()
	tmp := t.TempDir()
	start := time.Now()

	demo := filepath.Join(tmp, "demo")
	cmd := exec.Command("go", "run", "./internal/tools/demoprep", "--out", demo)
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("demoprep: %v\n%s", err, out)
	}
	build := filepath.Join(tmp, "out")
	p, err := pipeline.NewProfile(pipeline.Options{Flake: filepath.Join(demo, "flake"), Out: build, Hosts: []string{"laptop"},
		Closure: true, Formats: []image.Format{image.FormatPXE}, GoModuleDir: repoRoot()})
	if err != nil {
		t.Fatal(err)
	}
	var blog bytes.Buffer
	if _, err := pipeline.Build(ctx, p, &blog); err != nil {
		t.Fatalf("build: %v\n%s", err, blog.String())
	}
	t.Logf("demoprep + build (pxe, --closure): %.1f s", time.Since(start).Seconds())
	kx, err := kexecBinary(ctx, tmp)
	if err != nil {
		t.Fatal(err)
	}

	g := buildGuest(t, tmp)
	port := freePort(t)
	disk := vmtest.NewDisk(t, "disk.img", 8<<30)
	stream := &syncBuffer{}
	vm := vmtest.StartT(t, vmtest.Options{
		Name: "deploy-target", Kernel: vmtest.DefaultKernel(), Initrd: g.initrd, Append: "console=ttyS0,115200 quiet",
		UEFI: true, MemoryMiB: guestMiB(), Timeout: 40 * time.Minute, Stream: stream,
		Disks:     []vmtest.Disk{{Path: disk, Serial: "deploy-disk"}},
		ExtraArgs: []string{"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", port), "-device", "e1000,netdev=n0"},
	})
	if _, err := vm.Expect(ctx, "guest: sshd ready", 3*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, vm.Tail(30))
	}
	t.Logf("guest up after %.1f s", vm.Elapsed().Seconds())

	known := filepath.Join(tmp, "known_hosts")
	os.WriteFile(known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", port, g.knownHostsLine)), 0o600)
	other := filepath.Join(tmp, "known_hosts.wrong")
	wrongKey := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	os.WriteFile(other, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", port, wrongKey)), 0o600)
	ageKey := filepath.Join(demo, "age.key")
	wrongAge := filepath.Join(tmp, "wrong-age.key")
	k, _ := agekey.Generate()
	if err := agekey.Write(wrongAge, k); err != nil {
		t.Fatal(err)
	}
	opts := func(out io.Writer) Options {
		return Options{Target: "root@127.0.0.1", Port: port, Host: "laptop", Build: build, AgeKey: ageKey,
			SSHKey: g.sshKey, KnownHosts: known, Yes: true, After: "poweroff", Stdout: out, KexecBinary: kx,
			ReportTimeout: 15 * time.Minute, Timeout: 35 * time.Minute}
	}

	t.Run("wrong host key", func(t *testing.T) {
		var out bytes.Buffer
		o := opts(&out)
		o.KnownHosts = other
		err := Run(ctx, o)
		if errs.Code(err) != 2 || !strings.Contains(fmt.Sprint(err), "HOST KEY MISMATCH") {
			t.Fatalf("want exit 2 host key mismatch, got %d: %v\n%s", errs.Code(err), err, out.String())
		}
		t.Logf("refused: %v", err)
	})
	t.Run("wrong age key", func(t *testing.T) {
		var out bytes.Buffer
		o := opts(&out)
		o.AgeKey = wrongAge
		err := Run(ctx, o)
		if errs.Code(err) != 2 || !strings.Contains(fmt.Sprint(err), "does not open") || strings.Contains(out.String(), "deploy: connect") {
			t.Fatalf("want exit 2 before connecting, got %d: %v\n%s", errs.Code(err), err, out.String())
		}
		t.Logf("refused: %v", err)
	})
	t.Run("dry run", func(t *testing.T) {
		var out bytes.Buffer
		o := opts(&out)
		o.DryRun, o.Yes = true, false
		if err := Run(ctx, o); err != nil {
			t.Fatalf("dry run: %v\n%s", err, out.String())
		}
		for _, w := range []string{"install plan for laptop", "disk main: /dev/vda (serial deploy-disk", "pre-flight passed", "dry run: every check passed"} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("dry run output lacks %q:\n%s", w, out.String())
			}
		}
		tg, err := DialSSH(ctx, SSHConfig{User: "root", Host: "127.0.0.1", Port: port, Key: g.sshKey, KnownHosts: known})
		if err != nil {
			t.Fatal(err)
		}
		defer tg.Close()
		var b bytes.Buffer
		err = tg.Run(ctx, "cat /proc/mounts; ls -a /run", nil, &b, io.Discard)
		if err != nil || strings.Contains(b.String(), "nixlos-deploy") || !strings.Contains(b.String(), "proc") {
			t.Errorf("the dry run left something behind (%v):\n%s", err, b.String())
		}
	})
	assertBlank(t, disk)

	out := &syncBuffer{}
	t0 := time.Now()
	err = Run(ctx, opts(io.MultiWriter(out, testWriter{t})))
	if err != nil {
		vm.Send("cat /tmp/dropbear.log\n") // when the guest still runs its shell
		time.Sleep(3 * time.Second)
		t.Fatalf("deploy: exit %d: %v\nguest console:\n%s", errs.Code(err), err, vm.Tail(60))
	}
	if !strings.Contains(out.String(), "install complete host=laptop") {
		t.Fatalf("no install complete in the output")
	}
	t.Logf("deploy → install complete: %.1f s", time.Since(t0).Seconds())
	console := vm.Console()
	if !strings.Contains(console, "nixlos: install complete host=laptop") {
		t.Errorf("the guest console has no install complete line:\n%s", vm.Tail(40))
	}
	if strings.Contains(console, "AGE-SECRET-KEY") {
		t.Errorf("the age key appeared on the guest console")
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("the installer did not power off: %v", err)
	}

	pass, err := os.ReadFile(filepath.Join(demo, "luks-passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	vm2 := vmtest.StartT(t, vmtest.Options{Name: "firstboot", BootDisk: disk, UEFI: true, DefaultCPU: true, MemoryMiB: 1024, Timeout: 12 * time.Minute})
	booted, err := vmtest.BootInstalled(ctx, vm2, bytes.TrimRight(pass, "\n"), 10*time.Minute)
	if err != nil {
		t.Fatalf("first boot: %v\n%s", err, vm2.Tail(40))
	}
	if booted.Host != "laptop" || booted.AgeKey != "present" {
		t.Fatalf("booted host=%s age key %s; want laptop, present", booted.Host, booted.AgeKey)
	}
	t.Logf("installed disk booted: host=%s generation=%d in %.1f s; total %.1f s", booted.Host, booted.Generation, booted.Elapsed.Seconds(), time.Since(start).Seconds())
}

// guestMiB is the target's RAM: 2048 MiB, or $NIXLOS_DEPLOY_MIB (to
// measure the floor).
func guestMiB() int {
	if v, err := strconv.Atoi(os.Getenv("NIXLOS_DEPLOY_MIB")); err == nil && v > 0 {
		return v
	}
	return 2048
}

// assertBlank checks that the first MiB of the disk is still zero.
func assertBlank(t *testing.T, disk string) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("%s was written to", disk)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
