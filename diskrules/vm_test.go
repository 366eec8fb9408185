package diskrules

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/vmtest"
)

// vmManifest has one host, laptop, with a layout that boots under BIOS
// and UEFI and fits any of the test's disks.
const vmManifest = `{"version":1,"flake":{"dir":"/etc/nixlos/flake"},"hosts":{
 "laptop":{"system":"x86_64-linux","ageKeyFile":"/var/lib/sops-nix/key.txt","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
   "boot":{"size":"1M","type":"EF02"},
   "ESP":{"size":"64M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
   "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}}}}`

// TestRulesChooseInGuest (issue 13, VM test 1): three virtio disks of
// different sizes and serials (1, 6 and 8 GiB, sparse; the laptop fits on 6 GiB), each holding an
// ext4 filesystem. The first run is a full unattended install of the
// example's laptop (UEFI, its closure from the ISO, disk chosen by
// nixlos.disk=match:…), reaching "install complete" on the 6 GiB disk. The
// second run permutes the disks (other kernel names) and stays cheap: in
// the guest, installer check names the same disk (by its by-id name,
// derived without udev, with model, serial and size) and installer
// partition lays a small layout out on it. In both runs the other two
// disks are byte-unchanged.
func TestRulesChooseInGuest(t *testing.T) {
	testenv.VM(t)
	testenv.Tools(t, "mkfs.ext4", "nix", "git")
	media := buildLaptopMedia(t)
	dir := t.TempDir()
	type disk struct {
		serial string
		size   int64
		path   string
	}
	disks := map[string]*disk{"small": {serial: "small-1g", size: 1 << 30}, "mid": {serial: "mid-6g", size: 6 << 30}, "big": {serial: "big-8g", size: 8 << 30}}
	for name, d := range disks {
		d.path = filepath.Join(dir, name+".img")
		if err := os.WriteFile(d.path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(d.path, d.size); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "keep-"+name, d.path).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
	}
	const rules = "match:size>=5G,size<7G"
	script := `out=$(installer check --manifest /etc/nixlos/manifest.json --cmdline "nixlos.host=laptop nixlos.disk=` + rules + `" 2>&1) || true
echo "$out"
dev=$(echo "$out" | busybox sed -n 's|^disk main: /dev/disk/by-id/virtio-mid-6g = \(/dev/vd[a-z]\) .*|\1|p')
echo "chosen=$dev"
test -n "$dev"
installer partition --manifest /etc/nixlos/manifest.json --host laptop --disk main=$dev --yes
echo partitioned
`
	for run, order := range [][]string{{"small", "mid", "big"}, {"big", "small", "mid"}} {
		t.Run(fmt.Sprint("order-", strings.Join(order, "-")), func(t *testing.T) {
			before := map[string]string{}
			var vmDisks []vmtest.Disk
			for _, name := range order {
				before[name] = vmtest.FileSHA256(t, disks[name].path)
				vmDisks = append(vmDisks, vmtest.Disk{Path: disks[name].path, Serial: disks[name].serial})
			}
			start := time.Now()
			if run == 0 {
				installOn(t, media, vmDisks, rules)
				checkOthers(t, disks["mid"].path, order, func(name string) (string, string) {
					return before[name], vmtest.FileSHA256(t, disks[name].path)
				})
				return
			}
			res := vmtest.RunCheck(t, vmtest.Check{
				Name:      fmt.Sprintf("rules-%d", run),
				Disks:     vmDisks,
				MemoryMiB: 1024,
				Timeout:   10 * time.Minute,
				Initramfs: initramfs.Spec{Manifest: []byte(vmManifest), GoModuleDir: repoRoot()},
				Script:    script,
			})
			t.Logf("guest (%s):\n%s", time.Since(start).Round(time.Second), res.Output)
			if res.ExitCode != 0 || !strings.Contains(res.Output, "partitioned") {
				t.Fatalf("guest script failed (rc %d)", res.ExitCode)
			}
			// The kernel name of the mid disk is its place in this order.
			want := fmt.Sprintf("/dev/vd%c", 'a'+indexOf(order, "mid"))
			if !strings.Contains(res.Output, "chosen="+want+"\n") {
				t.Errorf("chosen disk is not %s (the 6 GiB disk mid-6g in this order)", want)
			}
			line := regexp.MustCompile(`disk main: /dev/disk/by-id/virtio-mid-6g = /dev/vd[a-z] \(serial mid-6g, 6\.0 GiB \(6\.4 GB\), virtio (ssd|hdd)\) by ` + regexp.QuoteMeta(rules))
			if !line.MatchString(res.Output) {
				t.Errorf("check output lacks the chosen disk's line matching %s", line)
			}
			checkOthers(t, disks["mid"].path, order, func(name string) (string, string) {
				return before[name], vmtest.FileSHA256(t, disks[name].path)
			})
		})
	}
}

// checkOthers: the chosen disk mid was written (a GPT header now), every
// other disk is byte-unchanged (hash before, after).
func checkOthers(t *testing.T, midPath string, order []string, hashes func(name string) (before, after string)) {
	t.Helper()
	for _, name := range order {
		before, after := hashes(name)
		switch {
		case name == "mid" && after == before:
			t.Errorf("the chosen disk mid-6g was not written")
		case name != "mid" && after != before:
			t.Errorf("disk %s changed: it was not chosen", name)
		}
	}
	if gpt := readAt(t, midPath, 512, 8); gpt != "EFI PART" {
		t.Errorf("mid disk has no GPT header after the run (%q)", gpt)
	}
}

func indexOf(l []string, s string) int {
	for i, v := range l {
		if v == s {
			return i
		}
	}
	return -1
}

func readAt(t *testing.T, path string, off int64, n int) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}
