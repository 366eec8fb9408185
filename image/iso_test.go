package image

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

func TestHybridMBR(t *testing.T) {
	code := bytes.Repeat([]byte{0xcc}, 432)
	tests := []struct {
		name    string
		h       Hybrid
		wantErr bool
	}{
		{"xorriso example", Hybrid{Code: code, BootLBA: 4130, ImageBytes: 34816 * 512, ESPLBA: 34, ESPBytes: 16384 * 512, DiskID: 0x18871585}, false},
		{"large", Hybrid{Code: code, BootLBA: 40, ImageBytes: 4 << 30, ESPLBA: 30, ESPBytes: 8 << 20, DiskID: 1}, false},
		{"short code", Hybrid{Code: code[:400], BootLBA: 1, ImageBytes: mib, ESPLBA: 30, ESPBytes: 2048}, true},
		{"esp beyond end", Hybrid{Code: code, BootLBA: 1, ImageBytes: mib, ESPLBA: 500, ESPBytes: mib}, true},
		{"odd size", Hybrid{Code: code, BootLBA: 1, ImageBytes: mib + 1, ESPLBA: 30, ESPBytes: 2048}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.h.MBR()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(m[:432], code) || m[510] != 0x55 || m[511] != 0xaa {
				t.Error("code or signature not in place")
			}
			if got := binary.LittleEndian.Uint32(m[432:]); got != tc.h.BootLBA*4 {
				t.Errorf("boot LBA field = %d, want %d", got, tc.h.BootLBA*4)
			}
			p1, p2 := m[446:462], m[462:478]
			if p1[0] != 0x80 || p1[4] != 0 || binary.LittleEndian.Uint32(p1[8:]) != 0 || int64(binary.LittleEndian.Uint32(p1[12:])) != tc.h.ImageBytes/512 {
				t.Errorf("partition 1 = % x", p1)
			}
			if p2[0] != 0 || p2[4] != 0xef || binary.LittleEndian.Uint32(p2[8:]) != tc.h.ESPLBA*4 || int64(binary.LittleEndian.Uint32(p2[12:])) != tc.h.ESPBytes/512 {
				t.Errorf("partition 2 = % x", p2)
			}
		})
	}
	// The CHS values xorriso wrote for the reference image.
	m, _ := tests[0].h.MBR()
	if want := []byte{0x80, 0x00, 0x01, 0x00, 0x00, 0x3f, 0x20, 0x10}; !bytes.Equal(m[446:454], want) {
		t.Errorf("partition 1 head = % x, want % x (xorriso)", m[446:454], want)
	}
}

// sfdiskLayout is the part of `sfdisk --json` the comparison uses.
type sfdiskLayout struct {
	PartitionTable struct {
		Label      string `json:"label"`
		Partitions []struct {
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// TestISOMatchesXorriso builds one staged tree into an ISO twice, with our
// go-diskfs path and with `xorriso -as mkisofs -isohybrid-mbr
// -isohybrid-gpt-basdat`, and checks the two agree where it matters: same
// files under the same Rock Ridge names, El Torito BIOS + UEFI entries
// pointing at the same files, and MBR partitions with the same meaning.
func TestISOMatchesXorriso(t *testing.T) {
	testenv.Tools(t, []string{"xorriso", "sfdisk"}...)
	spec := testSpec(t, false)
	seed, _ := spec.seed()
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	if err := stageISO(spec, seed, stage); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "ref.iso")
	xorrisoISO(t, stage, ref, spec.label())
	ours := filepath.Join(dir, "ours.iso")
	if err := exec.Command("cp", "-al", stage, stage+"2").Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := assembleISO(stage+"2", ours, spec.label(), seed, spec.Epoch, DebianTools.IsohdpfxBin); err != nil {
		t.Fatal(err)
	}
	if a, b := isoFiles(t, ref), isoFiles(t, ours); a != b || !strings.Contains(a, "/nixlos/initrd.img") {
		t.Errorf("file trees differ:\nxorriso:\n%s\nours:\n%s", a, b)
	}
	for _, iso := range []string{ref, ours} {
		checkHybrid(t, iso)
	}
}

func xorrisoISO(t testing.TB, stage, out, label string) {
	t.Helper()
	cmd := exec.Command("xorriso", "-as", "mkisofs", "-R", "-V", label,
		"-isohybrid-mbr", DebianTools.IsohdpfxBin,
		"-b", isoBootBin, "-c", isoCatalog, "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-eltorito-alt-boot", "-e", isoESP, "-no-emul-boot", "-isohybrid-gpt-basdat", "-o", out, stage)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, b)
	}
}

// isoFiles lists the regular files of an ISO with their sizes (xorriso reads
// the Rock Ridge names).
func isoFiles(t *testing.T, iso string) string {
	t.Helper()
	out, err := exec.Command("xorriso", "-indev", iso, "-find", "/", "-type", "f", "-exec", "report_lba", "--").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso -find %s: %v\n%s", iso, err, out)
	}
	var files []string
	re := regexp.MustCompile(`File data lba:.*,\s*(\d+) , '(.*)'$`)
	for _, l := range strings.Split(string(out), "\n") {
		if m := re.FindStringSubmatch(l); m != nil && !strings.HasSuffix(m[2], "boot.cat") {
			files = append(files, m[2]+" "+m[1])
		}
	}
	sort.Strings(files)
	return strings.Join(files, "\n")
}

// checkHybrid checks an ISO's El Torito catalog (as xorriso reports it) and
// its MBR (as sfdisk reads it) describe a hybrid BIOS/UEFI, CD/USB medium.
func checkHybrid(t *testing.T, iso string) {
	t.Helper()
	rep, err := exec.Command("xorriso", "-indev", iso, "-report_el_torito", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso -report_el_torito %s: %v\n%s", iso, err, rep)
	}
	img := regexp.MustCompile(`El Torito boot img :\s+(\d)\s+(BIOS|UEFI)\s+y\s+none\s+\S+\s+\S+\s+\d+\s+(\d+)`)
	lbas := map[string]int64{}
	for _, m := range img.FindAllStringSubmatch(string(rep), -1) {
		lbas[m[2]] = atoi(m[3])
	}
	if len(lbas) != 2 {
		t.Fatalf("%s: want a BIOS and a UEFI no-emulation El Torito entry:\n%s", filepath.Base(iso), rep)
	}
	for _, p := range []string{"/" + isoBootBin, "/" + isoESP} {
		if !strings.Contains(string(rep), p) {
			t.Errorf("%s: El Torito report lacks %s", filepath.Base(iso), p)
		}
	}
	out, err := exec.Command("sfdisk", "--json", iso).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", iso, err)
	}
	var l sfdiskLayout
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(iso)
	parts := l.PartitionTable.Partitions
	if l.PartitionTable.Label != "dos" || len(parts) != 2 {
		t.Fatalf("%s: want a dos label with 2 partitions: %s", filepath.Base(iso), out)
	}
	if p := parts[0]; p.Start != 0 || p.Size*512 != fi.Size() || !p.Bootable || p.Type != "0" {
		t.Errorf("%s: partition 1 %+v should be active type 0 over the whole %d-byte image", filepath.Base(iso), p, fi.Size())
	}
	if fi.Size()%HybridAlign != 0 {
		t.Errorf("%s: size %d not a multiple of %d", filepath.Base(iso), fi.Size(), HybridAlign)
	}
	esp := parts[1]
	if esp.Type != "ef" || esp.Start != lbas["UEFI"]*4 {
		t.Errorf("%s: partition 2 %+v should be type ef at the EFI image (512-byte LBA %d)", filepath.Base(iso), esp, lbas["UEFI"]*4)
	}
	f, _ := os.Open(iso)
	defer f.Close()
	espBytes, err := efiImageBytes(f, BootEntry{LBA: uint32(lbas["UEFI"])})
	if err != nil || esp.Size*512 != espBytes {
		t.Errorf("%s: partition 2 size %d sectors, EFI image %d bytes (%v)", filepath.Base(iso), esp.Size, espBytes, err)
	}
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	if got := int64(binary.LittleEndian.Uint32(mbr[432:])); got != lbas["BIOS"]*4 {
		t.Errorf("%s: isohybrid boot LBA %d, El Torito BIOS image at %d", filepath.Base(iso), got, lbas["BIOS"]*4)
	}
}

func atoi(s string) int64 {
	var n int64
	for _, c := range s {
		n = n*10 + int64(c-'0')
	}
	return n
}

func FuzzParseCatalog(f *testing.F) {
	valid := make([]byte, 128)
	valid[0], valid[30], valid[31] = 1, 0x55, 0xaa
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(valid[i:])
	}
	binary.LittleEndian.PutUint16(valid[28:], -sum)
	valid[32] = 0x88
	valid[64], valid[65], valid[66] = 0x91, 0xef, 1
	valid[96] = 0x88
	f.Add(valid)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseCatalog(b)
		if err == nil && len(entries) > len(b)/32 {
			t.Fatalf("%d entries from %d bytes", len(entries), len(b))
		}
	})
}
