package flash

import (
	"strings"
	"testing"

	"github.com/nixlos/nixlos/hw"
)

// Recorded facts (from real machines and QEMU guests) of the disks the
// rules decide on.
var (
	stick = Facts{Name: "sdb", Path: "/dev/sdb", Kind: hw.KindDisk, Model: "Cruzer Blade", Serial: "4C530001230812116435",
		SizeBytes: 15376000000, Removable: true, Bus: hw.BusUSB}
	usbSSD = Facts{Name: "sdc", Path: "/dev/sdc", Kind: hw.KindDisk, Model: "Extreme 55AE", Serial: "32343133464E3430",
		SizeBytes: 1000204886016, Bus: hw.BusUSB} // USB SSDs report removable=0
	sdReader = Facts{Name: "sdd", Path: "/dev/sdd", Kind: hw.KindDisk, Model: "STORAGE DEVICE", SizeBytes: 31914983424,
		Removable: true, Bus: hw.BusUSB}
	nvmeRoot = Facts{Name: "nvme0n1", Path: "/dev/nvme0n1", Kind: hw.KindDisk, Model: "Samsung SSD 980 1TB", SizeBytes: 1000204886016,
		Bus: hw.BusNVMe, InUse: "it holds the running system (nvme0n1p2 is mounted at /)"}
	virtioSys = Facts{Name: "vda", Path: "/dev/vda", Kind: hw.KindDisk, SizeBytes: 8 << 30, Bus: hw.BusVirtio}
	qemuStick = Facts{Name: "sda", Path: "/dev/sda", Kind: hw.KindDisk, Model: "QEMU HARDDISK", Serial: "1-0000:00:03.0-1",
		SizeBytes: 256 << 20, Removable: true, Bus: hw.BusUSB}
	loop  = Facts{Name: "loop0", Path: "/dev/loop0", Kind: hw.KindLoop, SizeBytes: 64 << 20}
	cd    = Facts{Name: "sr0", Path: "/dev/sr0", Kind: hw.KindCDROM, SizeBytes: 700 << 20, Removable: true, Bus: hw.BusATA}
	zram  = Facts{Name: "zram0", Path: "/dev/zram0", Kind: hw.KindVirtual, SizeBytes: 4 << 30}
	empty = Facts{Name: "sde", Path: "/dev/sde", Kind: hw.KindDisk, Removable: true, Bus: hw.BusUSB} // card reader, no card
)

func with(f Facts, edit func(*Facts)) Facts {
	edit(&f)
	return f
}

func TestRefusals(t *testing.T) {
	const iso = 600 << 20
	for _, tc := range []struct {
		name  string
		f     Facts
		image uint64
		want  []string // substrings, one per reason, in order; nil: may be written
	}{
		{"usb stick", stick, iso, nil},
		{"usb ssd, not removable", usbSSD, iso, nil},
		{"sd card reader", sdReader, iso, nil},
		{"qemu usb-storage stick", qemuStick, 200 << 20, nil},
		{"listing without an image", stick, 0, nil},
		{"image exactly the size", with(stick, func(f *Facts) { f.SizeBytes = iso }), iso, nil},
		{"stick mounted", with(stick, func(f *Facts) { f.InUse = "sdb1 is mounted at /media/usb (unmount it first)" }), iso,
			[]string{"sdb1 is mounted at /media/usb"}},
		{"stick backs swap", with(stick, func(f *Facts) { f.InUse = "sdb2 backs active swap /dev/sdb2 (swapoff it first)" }), iso,
			[]string{"backs active swap"}},
		{"stick under dm-crypt", with(stick, func(f *Facts) { f.InUse = "sdb1 backs active md/dm device dm-3 (stop or close it first)" }), iso,
			[]string{"dm-3"}},
		{"stick too small", with(stick, func(f *Facts) { f.SizeBytes = 512 << 20 }), iso,
			[]string{"it has 512.0 MiB but the image needs 600.0 MiB"}},
		{"stick holds the image", with(stick, func(f *Facts) {
			f.HoldsImage, f.InUse = true, "sdb1 is mounted at /media/usb (unmount it first)"
		}), iso, []string{"holds the image", "mounted at /media/usb"}},
		{"read-only stick", with(stick, func(f *Facts) { f.InUse = "it is read-only" }), iso, []string{"read-only"}},
		{"nvme system disk", nvmeRoot, iso, []string{"not a removable or USB disk (a fixed disk, on the nvme bus)", "holds the running system"}},
		{"virtio system disk", virtioSys, iso, []string{"not a removable or USB disk (a fixed disk, on the virtio bus)"}},
		{"fixed disk, bus unknown", with(virtioSys, func(f *Facts) { f.Bus = "" }), iso, []string{"not a removable or USB disk (a fixed disk)"}},
		{"loop device", loop, 1 << 20, []string{"loop device"}},
		{"cd drive", cd, iso, []string{"CD/DVD drive"}},
		{"zram", zram, iso, []string{"virtual device (virtual)"}},
		{"no medium", empty, iso, []string{"no medium"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Refusals(tc.f, tc.image)
			if len(got) != len(tc.want) {
				t.Fatalf("Refusals = %q, want %d reasons like %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("reason %d = %q, want it to contain %q", i, got[i], tc.want[i])
				}
			}
			cs := Checks(tc.f, tc.image)
			rules := []string{RuleRemovable, RuleSize, RuleImage, RuleInUse}
			for i, c := range cs {
				if i >= len(rules) || c.Rule != rules[i] || c.Detail == "" {
					t.Errorf("check %d = %+v", i, c)
				}
			}
			if len(cs) != len(rules) {
				t.Errorf("%d checks, want one per rule", len(cs))
			}
			p := NewPlan("nixlos.iso", tc.image, tc.f, 0)
			err := p.Err()
			if (err == nil) != (tc.want == nil) {
				t.Fatalf("plan error %v, refusals %q", err, got)
			}
			if err != nil && !strings.Contains(err.Error(), tc.f.Path) {
				t.Errorf("the refusal does not name the disk: %v", err)
			}
		})
	}
}

func TestListed(t *testing.T) {
	all := []Facts{cd, loop, nvmeRoot, qemuStick, stick, usbSSD, virtioSys, zram, empty,
		with(stick, func(f *Facts) { f.Name, f.Path, f.InUse = "sdf", "/dev/sdf", "sdf1 is mounted at /media" })}
	var names []string
	for _, f := range Listed(all) {
		names = append(names, f.Name)
	}
	// Removable or USB whole disks only, refused ones (mounted, empty) included
	// so the list says why they cannot be chosen.
	if got, want := strings.Join(names, " "), "sda sdb sdc sde sdf"; got != want {
		t.Errorf("listed %q, want %q", got, want)
	}
}

func TestLabel(t *testing.T) {
	for _, tc := range []struct {
		f    Facts
		want string
	}{
		{stick, "/dev/sdb (Cruzer Blade, 14.3 GiB, serial 4C530001230812116435)"},
		{virtioSys, "/dev/vda (8.0 GiB)"},
	} {
		if got := tc.f.Label(); got != tc.want {
			t.Errorf("Label = %q, want %q", got, tc.want)
		}
	}
}

func TestChoose(t *testing.T) {
	listed := []Facts{qemuStick, stick}
	for _, tc := range []struct {
		answer, want string
	}{
		{"sdb\n", "/dev/sdb"},
		{"  /dev/sda \r\n", "/dev/sda"},
		{"sda", "/dev/sda"},
		{"", ""},
		{"\n", ""},
		{"sd", ""},
		{"sdb1", ""},
		{"/dev/vda", ""},
		{"vda", ""},
		{"SDB", ""},
		{"/dev/disk/by-id/usb-x", ""},
		{"yes", ""},
	} {
		f, ok := Choose(listed, tc.answer)
		if ok != (tc.want != "") || f.Path != tc.want {
			t.Errorf("Choose(%q) = %q %v, want %q", tc.answer, f.Path, ok, tc.want)
		}
	}
	for _, tc := range []struct {
		answer string
		ok     bool
	}{{"sdb", true}, {"/dev/sdb\n", true}, {"y", false}, {"yes", false}, {"sda", false}, {"", false}} {
		if got := Confirmed(stick, tc.answer); got != tc.ok {
			t.Errorf("Confirmed(sdb, %q) = %v", tc.answer, got)
		}
	}
}

// FuzzChoose: whatever is typed, a choice is one of the listed disks and
// names it exactly (after trimming white space); nothing else matches.
func FuzzChoose(f *testing.F) {
	for _, s := range []string{"sdb", "/dev/sdb\n", " sda ", "", "sdb1", "/dev/../dev/sdb", "\x00", "sd\u00e9"} {
		f.Add(s)
	}
	listed := []Facts{qemuStick, stick}
	f.Fuzz(func(t *testing.T, answer string) {
		c, ok := Choose(listed, answer)
		if !ok {
			if c != (Facts{}) {
				t.Fatalf("no choice but facts %+v", c)
			}
			return
		}
		a := strings.TrimSpace(answer)
		if a != c.Name && a != c.Path {
			t.Fatalf("%q chose %s", answer, c.Path)
		}
		if !Confirmed(c, answer) {
			t.Fatalf("%q chose %s but does not confirm it", answer, c.Path)
		}
	})
}

func TestPlanText(t *testing.T) {
	ok := NewPlan("out/nixlos.iso", 600<<20, stick, 0).Text()
	for _, want := range []string{
		"image:  out/nixlos.iso (600.0 MiB)",
		"device: /dev/sdb (Cruzer Blade, 14.3 GiB, serial 4C530001230812116435)",
		"  ok      removable or USB disk     removable, on USB",
		"  ok      large enough              14.3 GiB for an image of 600.0 MiB",
		"  ok      not in use                nothing mounted",
		"  1. write 600.0 MiB from out/nixlos.iso to /dev/sdb in 4.0 MiB aligned writes",
		"  4. read 600.0 MiB back from /dev/sdb and compare its SHA-256",
	} {
		if !strings.Contains(ok, want) {
			t.Errorf("plan text lacks %q:\n%s", want, ok)
		}
	}
	bad := NewPlan("out/nixlos.iso", 600<<20, nvmeRoot, 0).Text()
	for _, want := range []string{"  REFUSED removable or USB disk     it is not a removable or USB disk (a fixed disk, on the nvme bus)",
		"  REFUSED not in use                it holds the running system"} {
		if !strings.Contains(bad, want) {
			t.Errorf("refused plan text lacks %q:\n%s", want, bad)
		}
	}
	if strings.Contains(bad, "steps") {
		t.Errorf("a refused plan shows steps:\n%s", bad)
	}
}
