package preflight

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/testenv"
)

// cpioNewc writes a newc archive of regular files (name → contents).
func cpioNewc(files map[string]string) []byte {
	var b bytes.Buffer
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	add := func(name, data string, mode uint32) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", 1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.WriteString(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	for _, n := range names {
		add(n, files[n], 0o100644)
	}
	add("TRAILER!!!", "", 0)
	return b.Bytes()
}

const modDir = "nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.6.32-modules-shrunk/lib/modules/6.6.32/"

var initrdFiles = map[string]string{
	"init": "#!/bin/sh\n",
	modDir + "kernel/drivers/block/virtio_blk.ko.xz":   "x",
	modDir + "kernel/drivers/virtio/virtio_pci.ko.xz":  "x",
	modDir + "kernel/drivers/scsi/sd_mod.ko.xz":        "x",
	modDir + "kernel/drivers/usb/storage/uas.ko.xz":    "x",
	modDir + "kernel/drivers/ata/pata-legacy.ko.zst":   "x",
	modDir + "modules.builtin":                         "kernel/drivers/ata/libata.ko\nkernel/drivers/ata/ahci.ko\n",
	modDir + "modules.dep":                             "",
	"nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x/etc": "",
}

func zstdBytes(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func gzipBytes(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func TestReadInitrdCPIO(t *testing.T) {
	plain := cpioNewc(initrdFiles)
	early := cpioNewc(map[string]string{"kernel/x86/microcode/GenuineIntel.bin": "ucode"})
	for name, data := range map[string][]byte{
		"plain":                plain,
		"zstd":                 zstdBytes(t, plain),
		"gzip":                 gzipBytes(plain),
		"early cpio then zstd": append(append(append([]byte{}, early...), make([]byte, 512)...), zstdBytes(t, plain)...),
		"two archives in gzip": gzipBytes(append(append([]byte{}, early...), plain...)),
	} {
		init := &Initrd{Modules: map[string]bool{}, Builtin: map[string]bool{}}
		if err := readInitrdCPIO(bytes.NewReader(data), init); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		mods := keysOf(init.Modules)
		want := []string{"pata_legacy", "sd_mod", "uas", "virtio_blk", "virtio_pci"}
		if !reflect.DeepEqual(mods, want) || !reflect.DeepEqual(keysOf(init.Builtin), []string{"ahci", "libata"}) || init.Kernel != "6.6.32" {
			t.Errorf("%s: modules %v builtin %v kernel %q", name, mods, keysOf(init.Builtin), init.Kernel)
		}
		if !init.Has("pata-legacy") || !init.Has("ahci") || init.Has("nvme") {
			t.Errorf("%s: Has is wrong", name)
		}
	}
	if err := readInitrdCPIO(bytes.NewReader([]byte("BZh91AY&SY")), &Initrd{}); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("bzip2 initrd: %v", err)
	}
}

func keysOf(m map[string]bool) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

// narStr writes a NAR string.
func narStr(b *bytes.Buffer, s string) {
	binary.Write(b, binary.LittleEndian, uint64(len(s)))
	b.WriteString(s)
	for b.Len()%8 != 0 {
		b.WriteByte(0)
	}
}

// narDir writes a NAR of a directory of regular files and symlinks
// ("->target" values are symlinks).
func narDir(entries map[string]string) []byte {
	var b bytes.Buffer
	for _, s := range []string{"nix-archive-1", "(", "type", "directory"} {
		narStr(&b, s)
	}
	for _, n := range keysOfS(entries) {
		v := entries[n]
		for _, s := range []string{"entry", "(", "name", n, "node", "(", "type"} {
			narStr(&b, s)
		}
		if target, ok := strings.CutPrefix(v, "->"); ok {
			for _, s := range []string{"symlink", "target", target} {
				narStr(&b, s)
			}
		} else {
			for _, s := range []string{"regular", "contents", v} {
				narStr(&b, s)
			}
		}
		narStr(&b, ")")
		narStr(&b, ")")
	}
	narStr(&b, ")")
	return b.Bytes()
}

func keysOfS(m map[string]string) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

const (
	toplevelPath = "/nix/store/cccccccccccccccccccccccccccccccc-nixos-system-laptop-24.05"
	initrdPath   = "/nix/store/dddddddddddddddddddddddddddddddd-initrd-linux-6.6.32"
)

// writeCache writes a file:// binary cache with the toplevel and initrd.
func writeCache(t *testing.T, initrd []byte) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	put := func(storePath string, nar []byte, zst bool) {
		hash := filepath.Base(storePath)[:32]
		file := "nar/" + hash + ".nar"
		if zst {
			nar = zstdBytes(t, nar)
			file += ".zst"
		}
		os.WriteFile(filepath.Join(dir, file), nar, 0o644)
		ni := fmt.Sprintf("StorePath: %s\nURL: %s\nCompression: zstd\nFileSize: %d\nNarHash: sha256:x\nNarSize: %d\nReferences: \n", storePath, file, len(nar), len(nar))
		os.WriteFile(filepath.Join(dir, hash+".narinfo"), []byte(ni), 0o644)
	}
	put(toplevelPath, narDir(map[string]string{"initrd": "->" + initrdPath + "/initrd", "kernel": "->/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-linux-6.6.32/bzImage", "init": "#!/bin/sh"}), true)
	put(initrdPath, narDir(map[string]string{"initrd": string(initrd)}), false)
	return "file://" + dir
}

func TestReadInitrdFromCache(t *testing.T) {
	url := writeCache(t, zstdBytes(t, cpioNewc(initrdFiles)))
	init, err := ReadInitrd(context.Background(), url, toplevelPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if init.Path != initrdPath+"/initrd" || init.Kernel != "6.6.32" || !init.Has("virtio_blk") || !init.Has("libata") {
		t.Errorf("ReadInitrd = %+v", init)
	}
	if _, err := ReadInitrd(context.Background(), url, "/nix/store/ffffffffffffffffffffffffffffffff-other", nil); err == nil {
		t.Error("a system the cache does not hold was read")
	}
}

// TestReadInitrdNixNAR: the NAR walker reads a NAR Nix wrote (nix-store --dump).
func TestReadInitrdNixNAR(t *testing.T) {
	testenv.Tools(t, "nix-store")
	dir := filepath.Join(t.TempDir(), "sys")
	os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "deeper", "file"), []byte("hello nar"), 0o644)
	os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink(initrdPath+"/initrd", filepath.Join(dir, "initrd"))
	out, err := exec.Command("nix-store", "--dump", dir).Output()
	if err != nil {
		t.Fatalf("nix-store --dump: %v", err)
	}
	var got []string
	_, err = walkNAR(bytes.NewReader(out), func(p, typ, link string, r io.Reader) (bool, error) {
		s := typ + " " + p
		if link != "" {
			s += " -> " + link
		}
		if r != nil {
			b, _ := io.ReadAll(r)
			s += " " + string(b)
		}
		got = append(got, s)
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"directory ", "symlink initrd -> " + initrdPath + "/initrd", "regular run #!/bin/sh\n", "directory sub", "directory sub/deeper", "regular sub/deeper/file hello nar"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("walk = %q, want %q", got, want)
	}
}

// TestModulesCheck: the gate's modules check on the initrd read above.
func TestModulesCheck(t *testing.T) {
	init := &Initrd{Path: initrdPath + "/initrd", Kernel: "6.6.32", Modules: map[string]bool{"virtio_blk": true, "virtio_pci": true, "sd_mod": true},
		Builtin: map[string]bool{"ahci": true}}
	disk := func(path string, mods ...string) map[string]Target {
		return map[string]Target{"main": {Disk: hw.Disk{Name: filepath.Base(path), Path: path, Kind: hw.KindDisk, SizeBytes: 16 * gib, Modules: mods}}}
	}
	for _, tc := range []struct {
		name    string
		disks   map[string]Target
		initrd  *Initrd
		ok      bool
		missing bool
		want    []string
	}{
		{name: "virtio present", disks: disk("/dev/vda", "virtio_blk", "virtio_pci"), initrd: init, ok: true, want: []string{"disk drivers /dev/vda (virtio_blk, virtio_pci) in the system's initrd"}},
		{name: "sata with builtin ahci", disks: disk("/dev/sda", "sd_mod", "ahci"), initrd: init, ok: true},
		{name: "nvme missing", disks: disk("/dev/nvme0n1", "nvme"), initrd: init, want: []string{"/dev/nvme0n1 needs nvme", "has no nvme", "boot.initrd.availableKernelModules", `add "nvme" to boot.initrd.availableKernelModules`}},
		{name: "builtin on the installer, unknown to the initrd", disks: disk("/dev/vda", "builtin:virtio_blk", "builtin:virtio-pci"), initrd: &Initrd{Modules: map[string]bool{}, Builtin: map[string]bool{}}, missing: true},
		{name: "no closure", disks: disk("/dev/nvme0n1", "nvme"), missing: true},
	} {
		f, made := modules(Input{Disks: tc.disks, Initrd: tc.initrd})
		if tc.missing {
			if made {
				t.Errorf("%s: a finding where none belongs: %+v", tc.name, f)
			}
			continue
		}
		if !made || f.OK != tc.ok {
			t.Errorf("%s: finding %+v (made %v), want ok=%v", tc.name, f, made, tc.ok)
			continue
		}
		text := strings.Join([]string{f.Hardware, f.Problem, f.Config, f.Fix}, " | ")
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: lacks %q: %s", tc.name, w, text)
			}
		}
	}
}

// FuzzWalkNAR: the NAR walker never panics and never reads more than given.
func FuzzWalkNAR(f *testing.F) {
	f.Add(narDir(map[string]string{"initrd": "->/nix/store/x", "a": "b"}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		walkNAR(bytes.NewReader(data), func(p, typ, link string, r io.Reader) (bool, error) {
			if r != nil {
				io.Copy(io.Discard, r)
			}
			return false, nil
		})
	})
}

// FuzzReadInitrd: the initrd reader never panics on any input.
func FuzzReadInitrd(f *testing.F) {
	f.Add(cpioNewc(initrdFiles))
	f.Add(gzipBytes(cpioNewc(initrdFiles)))
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, data []byte) {
		readInitrdCPIO(bytes.NewReader(data), &Initrd{Modules: map[string]bool{}, Builtin: map[string]bool{}})
	})
}
