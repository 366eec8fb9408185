package apply

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/initramfs/elfdeps"
	"github.com/nixlos/nixlos/partition/internal/corpus"
	"github.com/nixlos/nixlos/vmtest"
)

// TestGuestApply runs `installer partition` for luks-lvm and mdadm inside a
// QEMU guest (this host has no device-mapper or md) on 8 GiB virtio disks,
// reads the result back in the guest (sfdisk, cryptsetup status, lvs,
// mdadm --detail, blkid, findmnt), compares it with the expect files, then
// checks `installer partition --unmount` leaves no mount, mapper, active
// LV or md array behind.
func TestGuestApply(t *testing.T) {
	vmtest.SkipUnlessVM(t)
	var files []initramfs.File
	for _, n := range []string{"luks-lvm", "mdadm"} {
		data, err := os.ReadFile(filepath.Join(corpusDir, n+".json"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, initramfs.File{Path: "etc/nixlos/" + n + ".json", Data: data})
	}
	disks := []vmtest.Disk{
		{Path: vmtest.NewDisk(t, "main.img", 8<<30)},
		{Path: vmtest.NewDisk(t, "md1.img", 8<<30)},
		{Path: vmtest.NewDisk(t, "md2.img", 8<<30)},
	}
	res := vmtest.RunCheck(t, vmtest.Check{Name: "partition", Script: guestScript, Files: files, Disks: disks,
		MemoryMiB: 2048, Timeout: 15 * time.Minute})
	t.Logf("guest output (%.0f s after power-on):\n%s", res.Elapsed.Seconds(), res.Output)
	if res.ExitCode != 0 || !strings.Contains(res.Output, "GUEST-PARTITION-OK") {
		t.Fatalf("guest script failed (rc=%d)", res.ExitCode)
	}
	sec := sections(res.Output)
	checkGuestLUKSLVM(t, sec)
	checkGuestMdadm(t, sec)
}

const guestScript = `
printf 'secret' > /tmp/secret.key
printf 'additional' > /tmp/additionalSecret.key
sect() { echo "==BEGIN $1=="; shift; "$@"; echo "==END=="; }

installer partition --layout /etc/nixlos/luks-lvm.json --disk main=/dev/vda --yes --mount /mnt
sect sfdisk-vda sfdisk --json /dev/vda
sect luks cryptsetup status crypted
sect lvs lvm lvs --noheadings --separator , -o lv_name,vg_name,lv_active
sect blkid-luks blkid /dev/vda1 /dev/vda2 /dev/pool/root /dev/pool/home
sect findmnt-luks findmnt --json --list -o TARGET,SOURCE,FSTYPE
installer partition --layout /etc/nixlos/luks-lvm.json --disk main=/dev/vda --unmount --mount /mnt
sect closed-luks sh -c 'ls /dev/mapper; lvm lvs --noheadings --separator , -o lv_name,lv_active; findmnt --list -o TARGET | busybox grep "^/mnt" || echo no-mounts'

installer partition --layout /etc/nixlos/mdadm.json --disk disk1=/dev/vdb --disk disk2=/dev/vdc --yes --mount /mnt
sect mdadm mdadm --detail /dev/md/raid1
sect md-size blockdev --getsz /dev/md/raid1
sect sfdisk-md sfdisk --json /dev/md/raid1
sect sfdisk-vdb sfdisk --json /dev/vdb
sect findmnt-md findmnt --json --list -o TARGET,SOURCE,FSTYPE
installer partition --layout /etc/nixlos/mdadm.json --disk disk1=/dev/vdb --disk disk2=/dev/vdc --unmount --mount /mnt
sect closed-md sh -c 'cat /proc/mdstat; findmnt --list -o TARGET | busybox grep "^/mnt" || echo no-mounts'
echo GUEST-PARTITION-OK
`

// sections splits the guest output into the ==BEGIN name== … ==END== parts.
func sections(out string) map[string]string {
	m := map[string]string{}
	re := regexp.MustCompile(`(?s)==BEGIN ([a-z-]+)==\n(.*?)==END==`)
	for _, s := range re.FindAllStringSubmatch(out, -1) {
		m[s[1]] = s[2]
	}
	return m
}

func sfdiskSection(t *testing.T, sec map[string]string, name string) corpus.Sfdisk {
	t.Helper()
	var d corpus.Sfdisk
	if err := json.Unmarshal([]byte(sec[name]), &d); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, sec[name])
	}
	return d
}

func checkGuestLUKSLVM(t *testing.T, sec map[string]string) {
	exp := corpus.LoadExpect(t, corpusDir, "luks-lvm")
	got := sfdiskSection(t, sec, "sfdisk-vda").PartitionTable.Partitions
	want := exp.Disks["main"].Content.Partitions
	if len(got) != len(want) {
		t.Fatalf("vda: %d partitions, want %d", len(got), len(want))
	}
	for i, w := range want {
		s, _ := corpus.Sector(w.StartSector)
		e, _ := corpus.Sector(w.EndSector)
		if got[i].Start != s || got[i].Start+got[i].Size-1 != e || got[i].Name != w.GPTPartitionName || !strings.EqualFold(got[i].Type, w.TypeGUID) {
			t.Errorf("vda partition %d: %+v, want %+v", i+1, got[i], w)
		}
	}
	for _, want := range []string{"is active", "type:    LUKS2", "device:  /dev/vda2", "discards"} {
		if !strings.Contains(sec["luks"], want) {
			t.Errorf("cryptsetup status lacks %q:\n%s", want, sec["luks"])
		}
	}
	for _, lv := range []string{"home,pool,active", "raw,pool,active", "root,pool,active"} {
		if !strings.Contains(strings.ReplaceAll(sec["lvs"], " ", ""), lv) {
			t.Errorf("lvs lacks %s:\n%s", lv, sec["lvs"])
		}
	}
	for _, want := range []string{`/dev/vda1: SEC_TYPE="msdos"`, `/dev/vda2: UUID=`, `TYPE="crypto_LUKS"`, `/dev/pool/root: UUID=`, `TYPE="ext4"`} {
		if !strings.Contains(sec["blkid-luks"], want) {
			t.Errorf("blkid lacks %q:\n%s", want, sec["blkid-luks"])
		}
	}
	checkGuestMounts(t, sec["findmnt-luks"], map[string]string{"/mnt": "ext4", "/mnt/boot": "vfat", "/mnt/home": "ext4"})
	closed := sec["closed-luks"]
	if strings.Contains(closed, "crypted") || strings.Contains(closed, "pool-") || !strings.Contains(closed, "no-mounts") || strings.Contains(closed, ",active") {
		t.Errorf("after --unmount something is left:\n%s", closed)
	}
}

func checkGuestMdadm(t *testing.T, sec map[string]string) {
	for _, want := range []string{"Raid Level : raid1", "Raid Devices : 2", "Name : any:raid1"} {
		if !strings.Contains(strings.Join(strings.Fields(sec["mdadm"]), " "), want) {
			t.Errorf("mdadm --detail lacks %q:\n%s", want, sec["mdadm"])
		}
	}
	exp := corpus.LoadExpect(t, corpusDir, "mdadm")
	for _, disk := range []string{"vdb"} {
		got := sfdiskSection(t, sec, "sfdisk-"+disk).PartitionTable.Partitions
		want := exp.Disks["disk1"].Content.Partitions
		for i, w := range want {
			s, _ := corpus.Sector(w.StartSector)
			e, _ := corpus.Sector(w.EndSector)
			if i >= len(got) || got[i].Start != s || got[i].Start+got[i].Size-1 != e || got[i].Name != w.GPTPartitionName {
				t.Errorf("%s partition %d: %+v, want %+v", disk, i+1, got, w)
			}
		}
	}
	mdSize, err := strconv.ParseUint(strings.TrimSpace(sec["md-size"]), 10, 64)
	if err != nil {
		t.Fatalf("md size %q: %v", sec["md-size"], err)
	}
	md := sfdiskSection(t, sec, "sfdisk-md").PartitionTable.Partitions
	wantEnd := (mdSize-33)/2048*2048 - 1 // the expect file's formula over the real array size
	if len(md) != 1 || md[0].Start != 2048 || md[0].Start+md[0].Size-1 != wantEnd || md[0].Name != "mdadm-raid1-primary" {
		t.Errorf("md partitions %+v, want one mdadm-raid1-primary at 2048-%d", md, wantEnd)
	}
	checkGuestMounts(t, sec["findmnt-md"], map[string]string{"/mnt": "ext4"})
	if c := sec["closed-md"]; strings.Contains(c, "md127") || strings.Contains(c, "raid1 ") || !strings.Contains(c, "no-mounts") {
		t.Errorf("after --unmount something is left:\n%s", c)
	}
}

func checkGuestMounts(t *testing.T, js string, want map[string]string) {
	t.Helper()
	var fm struct {
		Filesystems []struct{ Target, Source, Fstype string } `json:"filesystems"`
	}
	if err := json.Unmarshal([]byte(js), &fm); err != nil {
		t.Fatalf("findmnt: %v\n%s", err, js)
	}
	got := map[string]string{}
	for _, f := range fm.Filesystems {
		if f.Target == "/mnt" || strings.HasPrefix(f.Target, "/mnt/") {
			got[f.Target] = f.Fstype
		}
	}
	if len(got) != len(want) {
		t.Errorf("mounts %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// BenchmarkGuestApplyLUKSLVM times, in one QEMU guest on the same virtio
// disk, `installer partition` of luks-lvm against disko's recorded
// createCommands run as a shell script (device paths mapped to /dev/vda*,
// a partition re-read after each sgdisk, as disko's partprobe does), and
// reports the ratio.
func BenchmarkGuestApplyLUKSLVM(b *testing.B) {
	vmtest.SkipUnlessVM(b)
	data, _ := os.ReadFile(filepath.Join(corpusDir, "luks-lvm.json"))
	exp := corpus.LoadExpect(b, corpusDir, "luks-lvm")
	r := strings.NewReplacer("/dev/disk/by-partlabel/disk-main-ESP", "/dev/vda1", "/dev/disk/by-partlabel/disk-main-luks", "/dev/vda2", "/dev/vdb", "/dev/vda")
	var script strings.Builder
	for _, c := range exp.CreateCommands {
		for i, a := range c {
			if i > 0 {
				script.WriteString(" ")
			}
			script.WriteString("'" + r.Replace(a) + "'")
		}
		script.WriteString("\n")
		if c[0] == "sgdisk" {
			script.WriteString("blockdev --rereadpt /dev/vda\n")
		}
	}
	guest := `
printf 'secret' > /tmp/secret.key
printf 'additional' > /tmp/additionalSecret.key
t0=$(busybox cut -d' ' -f1 /proc/uptime)
installer partition --layout /etc/nixlos/luks-lvm.json --disk main=/dev/vda --yes --no-mount 2>/dev/null
t1=$(busybox cut -d' ' -f1 /proc/uptime)
installer partition --layout /etc/nixlos/luks-lvm.json --disk main=/dev/vda --unmount >/dev/null 2>&1
wipefs -a -f /dev/vda1 /dev/vda2 >/dev/null; wipefs -a -f /dev/vda >/dev/null; blockdev --rereadpt /dev/vda
t2=$(busybox cut -d' ' -f1 /proc/uptime)
sh -e /etc/nixlos/disko-create.sh >/dev/null 2>&1
t3=$(busybox cut -d' ' -f1 /proc/uptime)
echo "TIMES $t0 $t1 $t2 $t3"
`
	var tools []string // the image's tools plus sgdisk, which only the baseline needs
	for _, t := range append(initramfs.DefaultTools, "sgdisk") {
		if elfdeps.LookTool(t) != "" {
			tools = append(tools, t)
		}
	}
	for b.Loop() {
		res := vmtest.RunCheck(b, vmtest.Check{Name: "bench", Script: guest, MemoryMiB: 2048, Timeout: 15 * time.Minute,
			Initramfs: initramfs.Spec{Tools: tools},
			Disks:     []vmtest.Disk{{Path: vmtest.NewDisk(b, "main.img", 8<<30)}},
			Files:     []initramfs.File{{Path: "etc/nixlos/luks-lvm.json", Data: data}, {Path: "etc/nixlos/disko-create.sh", Data: []byte(script.String()), Mode: 0o755}}})
		m := regexp.MustCompile(`TIMES ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)`).FindStringSubmatch(res.Output)
		if res.ExitCode != 0 || m == nil {
			b.Fatalf("guest failed (rc=%d):\n%s", res.ExitCode, res.Output)
		}
		var t [4]float64
		for i := range t {
			t[i], _ = strconv.ParseFloat(m[i+1], 64)
		}
		b.ReportMetric(t[1]-t[0], "s-nixlos")
		b.ReportMetric(t[3]-t[2], "s-disko-cmds")
		b.ReportMetric((t[1]-t[0])/(t[3]-t[2]), "ratio")
	}
}
