package install_test

// VM acceptance test of issue 11 (3): a power cut at each install step in
// turn, on one disk image, with the same unattended command line each
// time: the install resumes and completes, the disk then boots, and after
// every cut the disk either boots nothing or boots a complete system.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/vmtest"
)

// espTypeGUID is the GPT type of an EFI system partition.
const espTypeGUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

// TestPowerCut kills QEMU (a power cut: the guest's page cache is lost)
// during mkfs, right after the partition step, during the closure copy
// and during the boot loader step, each detected from the installer's
// console lines; each next boot must say where it resumes, never wipe
// again once the layout is made, and finally complete; then the installed
// laptop boots. After every cut the image is inspected offline (MBR boot
// code, the ESP's fallback loader and systemd-boot entries, with mtools).
func TestPowerCut(t *testing.T) {
	e := setup(t)
	testenv.Tools(t, "mdir", "mtype", "mcopy", "sfdisk")
	start := time.Now()
	ctx := context.Background()
	toplevel := e.manifest.Hosts["laptop"].Toplevel
	if toplevel == "" {
		t.Fatal("the media's manifest has no laptop toplevel")
	}
	img := vmtest.NewDisk(t, "powercut.img", 8<<30)
	const cmdline = "nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff"
	resumeLine := regexp.MustCompile(`nixlos: resume: (continuing after step (\S+)\s|none \([^\n]*\))`) // the whole step name: the console may deliver the line in pieces

	cuts := []struct {
		name   string
		resume string         // the step the boot must resume after ("" = starts over; "*" = any)
		at     *regexp.Regexp // the console line to cut at
		delay  time.Duration  // then wait this long
		notYet string         // a line that must not have come before the cut
	}{
		{"during mkfs", "", regexp.MustCompile(`partition: mkfs /dev/pool/root ext4`), 0, "[partition] done"},
		{"after partition", "", regexp.MustCompile(`\[partition\] done`), 0, ""},
		{"during the closure copy", "*", regexp.MustCompile(`\[install-key\] (done|skipped)`), 3 * time.Second, "[copy-closure] done"},
		{"during the boot loader", "install-key", regexp.MustCompile(`bootloader: switch-to-configuration: installed systemd-boot`), 0, "[bootloader] done"},
	}
	for i, c := range cuts {
		name := fmt.Sprintf("powercut-%d", i+1)
		vm := boot(t, uefi, e.initrd, name, cmdline, vmtest.Disk{Path: img})
		if _, err := vm.Expect(ctx, "nixlos-installer vmtest ready", 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		after := expectResume(t, vm, resumeLine, c.resume)
		if _, err := vm.Expect(ctx, c.at, 10*time.Minute); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		time.Sleep(c.delay)
		vm.Kill()
		con := vm.Console()
		if c.notYet != "" && strings.Contains(con, c.notYet) {
			t.Fatalf("%s: %q came before the cut: the cut missed its step\n%s", c.name, c.notYet, vm.Tail(20))
		}
		checkResumedRun(t, c.name, after, con)
		noSecrets(t, e, "console", con)
		t.Logf("cut %d %s: at %.1f s of power-on (test %.1f s); disk: %s", i+1, c.name, vm.Elapsed().Seconds(),
			time.Since(start).Seconds(), checkBootPaths(t, c.name, img, toplevel))
	}

	vm := boot(t, uefi, e.initrd, "powercut-final", cmdline, vmtest.Disk{Path: img})
	if _, err := vm.Expect(ctx, "nixlos-installer vmtest ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	after := expectResume(t, vm, resumeLine, "activate")
	expectInstalled(t, vm, "laptop")
	checkResumedRun(t, "final", after, vm.Console())
	noSecrets(t, e, "console", vm.Console())
	if !strings.Contains(vm.Console(), "[bootloader] done") || !strings.Contains(vm.Console(), "[copy-closure] skipped") {
		t.Errorf("the final run did not skip the copy and install the boot loader:\n%s", vm.Tail(30))
	}
	t.Logf("final run complete at %.1f s of the test; disk: %s", time.Since(start).Seconds(), checkBootPaths(t, "final", img, toplevel))

	b := bootInstalled(t, e, uefi, "powercut-firstboot", vmtest.Disk{Path: img})
	if b.Host != "laptop" || b.Generation != 1 || b.AgeKey != "present" {
		t.Errorf("installed laptop: host=%s generation=%d age key %s; want laptop 1 present", b.Host, b.Generation, b.AgeKey)
	}
	t.Logf("TestPowerCut: 4 cuts, resume, complete and first boot in %.1f s", time.Since(start).Seconds())
}

// expectResume waits for the boot flow's resume line and checks it: want
// "" means no resume, "*" any resume, else a resume after that step. It
// returns the step resumed after ("" for none).
func expectResume(t *testing.T, vm *vmtest.VM, line *regexp.Regexp, want string) string {
	t.Helper()
	m, err := vm.Expect(context.Background(), line, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, line0 := m[2], strings.TrimSpace(m[0])
	switch {
	case want == "" && got != "":
		t.Fatalf("%q: want no resume (the layout was not complete)", line0)
	case want == "*" && got == "":
		t.Fatalf("%q: want a resume", line0)
	case want != "" && want != "*" && got != want:
		t.Fatalf("%q: want a resume after step %s", line0, want)
	}
	t.Logf("%s (at %.1f s of power-on)", line0, vm.Elapsed().Seconds())
	return got
}

// checkResumedRun: a run that resumed neither wiped nor formatted anything.
func checkResumedRun(t *testing.T, name, after, console string) {
	t.Helper()
	if after == "" {
		return
	}
	if regexp.MustCompile(`partition: (wipe|table|luksFormat|mkfs|pvcreate|lvcreate)`).MatchString(console) {
		t.Errorf("%s: the run resumed after %s but wiped or formatted:\n%s", name, after, console)
	}
}

// checkBootPaths inspects the laptop image offline and fails the test when
// it would boot a system that is not the complete one: BIOS boot code in
// the MBR (the laptop never has any), or an ESP with the fallback loader
// and a systemd-boot entry whose kernel, initrd or init are not the
// system's. It returns what it found.
func checkBootPaths(t *testing.T, name, img, toplevel string) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	mbr := make([]byte, 440)
	_, err = f.ReadAt(mbr, 0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mbr, make([]byte, 440)) {
		t.Errorf("%s: the MBR has boot code", name)
	}
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		return "no partition table: boots nothing"
	}
	var esp *sfdiskPart
	for _, p := range parseSfdisk(t, out) {
		if strings.EqualFold(p.Type, espTypeGUID) {
			esp = &p
		}
	}
	if esp == nil {
		return "no ESP: boots nothing"
	}
	at := img + "@@" + strconv.FormatUint(esp.Start*512, 10)
	mtools := func(args ...string) (string, error) {
		cmd := exec.Command(args[0], append([]string{"-i", at}, args[1:]...)...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if _, err := mtools("mdir", "-b", "::/EFI/BOOT/BOOTX64.EFI"); err != nil {
		return "no fallback loader on the ESP: boots nothing"
	}
	list, err := mtools("mdir", "-b", "::/loader/entries")
	var entries []string
	for _, l := range strings.Fields(list) {
		if err == nil && strings.HasSuffix(strings.ToLower(l), ".conf") {
			entries = append(entries, l)
		}
	}
	if len(entries) == 0 {
		return "systemd-boot without entries: boots nothing"
	}
	dir := t.TempDir()
	for _, ent := range entries {
		conf, err := mtools("mtype", ent)
		if err != nil {
			t.Errorf("%s: %s: %v", name, ent, err)
			continue
		}
		fields := map[string]string{}
		for _, l := range strings.Split(conf, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		for key, want := range map[string]string{"linux": filepath.Join(toplevel, "kernel"), "initrd": filepath.Join(toplevel, "initrd")} {
			local := filepath.Join(dir, key)
			os.Remove(local)
			if out, err := mtools("mcopy", "::"+fields[key], local); err != nil {
				t.Errorf("%s: entry %s: its %s %s is not on the ESP: %v %s", name, ent, key, fields[key], err, out)
				continue
			}
			if vmtest.FileSHA256(t, local) != vmtest.FileSHA256(t, want) {
				t.Errorf("%s: entry %s: its %s is not the complete system's %s", name, ent, key, want)
			}
		}
		if !strings.Contains(" "+fields["options"]+" ", " init="+toplevel+"/init ") {
			t.Errorf("%s: entry %s does not boot %s: options %q", name, ent, toplevel, fields["options"])
		}
	}
	return fmt.Sprintf("boots the complete system (%d entries checked)", len(entries))
}
