package image

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/nixlos/nixlos/closure"
)

// testCache writes a binary-cache-shaped directory with Nix's long names.
func testCache(t *testing.T) (string, map[string][]byte) {
	dir := t.TempDir()
	files := map[string][]byte{
		"nix-cache-info": []byte("StoreDir: /nix/store\n"),
		"8y9fwyvaglakq7h7ka8d71ng38y4mmih.narinfo":                         []byte("StorePath: /nix/store/8y9fwyvaglakq7h7ka8d71ng38y4mmih-x\n"),
		"8y9fwyvaaaaaaaaaaaaaaaaaaaaaaaaa.narinfo":                         []byte("same 8.3 prefix\n"),
		"nar/03ckp4ig6iwvpm7fh3had4spnhvccpkn5f9xlngj85chpz5m1j1q.nar.zst": bytes.Repeat([]byte("nar"), 5000),
		"nar/03ckp4ig6iwvpm7fh3had4spnhvccpkn5f9xlngj85chpz5m1j1r.nar.zst": []byte("other"),
		"nar/1s7srfqqxr9jpi4hcclhr10waspff3dlzrd5xq8nh8qddxcp3mzc.nar.zst": {},
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, files
}

// TestCacheOnMedia checks the cache on each medium: in the ISO's
// filesystem, in the USB image's NIXLOS-CACHE partition (ISO 9660), in the
// PXE bundle, with Nix's long file names intact; never in the initrd.
func TestCacheOnMedia(t *testing.T) {
	spec := testSpec(t, false)
	cache, files := testCache(t)
	spec.NixCache = cache
	out := t.TempDir()
	if _, err := Build(spec, out, nil); err != nil {
		t.Fatal(err)
	}
	check := func(medium string, read func(name string) ([]byte, error)) {
		t.Helper()
		for name, want := range files {
			got, err := read(closure.CacheDir + "/" + name)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %s: %d bytes, %v; want %d bytes", medium, name, len(got), err, len(want))
			}
		}
	}
	iso, err := os.Open(filepath.Join(out, ISOName))
	if err != nil {
		t.Fatal(err)
	}
	defer iso.Close()
	isofs, err := newISOFS(iso, "")
	if err != nil {
		t.Fatal(err)
	}
	check("iso", isofs.ReadFile)

	usb, err := os.Open(filepath.Join(out, USBName))
	if err != nil {
		t.Fatal(err)
	}
	defer usb.Close()
	table, err := gpt.Read(usb, 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Partitions) != 2 || table.Partitions[1].Name != closure.CachePartName || table.Partitions[1].Type != linuxDataGUID {
		t.Fatalf("usb partitions: %+v", table.Partitions)
	}
	p := table.Partitions[1]
	sec := io.NewSectionReader(usb, int64(p.Start)*512, int64(p.End-p.Start+1)*512)
	vol, err := readVolume(sec)
	if err != nil || vol.Label != closure.CacheVolume {
		t.Errorf("usb cache volume %q: %v", vol.Label, err)
	}
	usbfs, err := newISOFS(sec, "")
	if err != nil {
		t.Fatal(err)
	}
	check("usb", usbfs.ReadFile)
	check("pxe", func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(out, PXEDir, name)) })

	for _, m := range []string{ISOName, USBName, PXEDir} {
		info, err := Inspect(filepath.Join(out, m))
		if err != nil {
			t.Fatalf("inspect %s: %v", m, err)
		}
		if info.Cache != nil || info.Closures != nil { // the test manifest names no cache
			t.Errorf("%s: cache %+v", m, info.Cache)
		}
		initrd, err := ReadInitrd(mustRead(t, spec.Initrd))
		if err != nil {
			t.Fatal(err)
		}
		_ = initrd
	}
	data := mustRead(t, spec.Initrd)
	if bytes.Contains(data, []byte("narinfo")) || bytes.Contains(data, []byte(closure.CacheDir)) {
		t.Error("the initrd mentions the cache")
	}
	sums := string(mustRead(t, filepath.Join(out, SumsName)))
	if !strings.Contains(sums, PXEDir+"/"+closure.CacheDir+"/nix-cache-info") {
		t.Errorf("SHA256SUMS misses the PXE cache:\n%s", sums)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
