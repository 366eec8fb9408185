package closure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/testenv"
)

func TestKeyFormat(t *testing.T) {
	k, err := GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Name, "nixlos-") {
		t.Errorf("name %q", k.Name)
	}
	back, err := ParseSecretKey(k.String())
	if err != nil || back.Public().String() != k.Public().String() {
		t.Fatalf("secret key round trip: %v", err)
	}
	pub, err := ParsePublicKey(k.Public().String() + "\n")
	if err != nil || pub.String() != k.Public().String() {
		t.Fatalf("public key round trip: %v", err)
	}
	sig := k.Sign("1;/nix/store/x;sha256:y;1;")
	if !pub.Verify("1;/nix/store/x;sha256:y;1;", sig) || pub.Verify("1;/nix/store/x;sha256:y;2;", sig) {
		t.Error("verify")
	}
	other, _ := GenerateKey(k.Name) // same name, other key
	if other.Public().Verify("1;/nix/store/x;sha256:y;1;", sig) {
		t.Error("another key verified the signature")
	}
	for _, bad := range []string{"", "x", "x:", ":AAAA", "x:!!", "x:AAAA"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
	if _, err := GenerateKey("a:b"); err == nil {
		t.Error("key name with ':' accepted")
	}
	file, remove, err := k.WriteTemp()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
	remove()
	if _, err := os.Stat(filepath.Dir(file)); err == nil {
		t.Error("key directory left behind")
	}
}

// TestKeyMatchesNix checks that nix derives the same public key from our
// secret key file.
func TestKeyMatchesNix(t *testing.T) {
	needNix(t)
	k, _ := GenerateKey("nixlos-test")
	cmd := exec.Command("nix", "--extra-experimental-features", "nix-command", "key", "convert-secret-to-public")
	cmd.Stdin = strings.NewReader(k.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix key convert-secret-to-public: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != k.Public().String() {
		t.Errorf("nix says %s, we say %s", got, k.Public())
	}
}

const narinfo = `StorePath: /nix/store/8y9fwyvaglakq7h7ka8d71ng38y4mmih-nixos-system-tiny
URL: nar/03ckp4ig6iwvpm7fh3had4spnhvccpkn5f9xlngj85chpz5m1j1q.nar.zst
Compression: zstd
FileHash: sha256:03ckp4ig6iwvpm7fh3had4spnhvccpkn5f9xlngj85chpz5m1j1q
FileSize: 233
NarHash: sha256:0rc0pskrkf22jcggnr65xx8ringiggnba3wb2glhj3qzfqx2k1ms
NarSize: 584
References: c36f3w7xczj4wc4bnrfca436xd243sdp-tree mbrflz9c99waljy5c4n2plqmn70d3jzn-m.nix
Deriver: 0vxhp5l4bm74dbsf4zyhcrfx2ay5qfri-nixos-system-tiny.drv
Sig: test-1:a2pd5I3+adN3lZ3Rx4RyOeoZmGAhwb197qgjsRB1VAgIl3l4g3Gy6oeLILgRr3hf2b3WgqORczpvZtb6cjqDAQ==
`

// TestNarInfoSignedByNix checks a signature nix made (nix key
// generate-secret + nix copy ?secret-key=) against its public key.
func TestNarInfoSignedByNix(t *testing.T) {
	n, err := ParseNarInfo([]byte(narinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := "1;/nix/store/8y9fwyvaglakq7h7ka8d71ng38y4mmih-nixos-system-tiny;sha256:0rc0pskrkf22jcggnr65xx8ringiggnba3wb2glhj3qzfqx2k1ms;584;/nix/store/c36f3w7xczj4wc4bnrfca436xd243sdp-tree,/nix/store/mbrflz9c99waljy5c4n2plqmn70d3jzn-m.nix"
	if n.Fingerprint() != want {
		t.Errorf("fingerprint\n got %s\nwant %s", n.Fingerprint(), want)
	}
	key, _ := ParsePublicKey("test-1:hojN4B6Zxlm0Q+pySCcdxaEFgAcG9HmCYfkU9nnGM5I=")
	if !n.SignedBy(key) {
		t.Error("nix's signature does not verify")
	}
	other, _ := GenerateKey("test-1")
	if n.SignedBy(other.Public()) {
		t.Error("another key verified")
	}
	for _, bad := range []string{"", "StorePath: /tmp/x\nNarHash: a\nURL: b\n", "garbage", "StorePath: /nix/store/x\nNarSize: x\n"} {
		if _, err := ParseNarInfo([]byte(bad)); err == nil {
			t.Errorf("ParseNarInfo(%q) accepted", bad)
		}
	}
}

func TestSummarize(t *testing.T) {
	k, _ := GenerateKey("s")
	mk := func(base string, size int64, refs ...string) []byte {
		n := &NarInfo{StorePath: StoreDir + "/" + base, NarHash: "sha256:x", NarSize: size, References: refs}
		return []byte("StorePath: " + n.StorePath + "\nURL: nar/x.nar\nFileSize: 10\nNarHash: sha256:x\nNarSize: " +
			strconv.FormatInt(size, 10) + "\nReferences: " + strings.Join(refs, " ") + "\nSig: " + k.Sign(n.Fingerprint()) + "\n")
	}
	a := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-top"
	b := "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib"
	c := "cccccccccccccccccccccccccccccccc-missing"
	fsys := fstest.MapFS{
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.narinfo": {Data: mk(a, 100, a, b)},
		"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.narinfo": {Data: mk(b, 50)},
	}
	s, err := Summarize(fsys, StoreDir+"/"+a, k.Public())
	if err != nil || s.Paths != 2 || s.NarSize != 150 || s.FileSize != 20 || !s.Signed || len(s.Missing) != 0 {
		t.Errorf("summary %+v %v", s, err)
	}
	other, _ := GenerateKey("s")
	if s, _ := Summarize(fsys, StoreDir+"/"+a, other.Public()); s.Signed {
		t.Error("signed by another key")
	}
	fsys["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.narinfo"] = &fstest.MapFile{Data: mk(b, 50, c)}
	if s, _ := Summarize(fsys, StoreDir+"/"+a, k.Public()); s.Signed || len(s.Missing) != 1 || s.Missing[0] != StoreDir+"/"+c {
		t.Errorf("missing path: %+v", s)
	}
	if _, err := Summarize(fsys, "/tmp/x", k.Public()); err == nil {
		t.Error("non-store path accepted")
	}
}

func needNix(t *testing.T) {
	t.Helper()
	testenv.Tools(t, "nix")
}

// tinyFlake writes a flake whose host "tiny" has a builtin:buildenv
// toplevel (no builder binary needed) referencing a source tree.
func tinyFlake(t *testing.T, motd string) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tree/etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree/etc/motd"), []byte(motd), 0o644)
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(`{
  outputs = { self }: {
    nixosConfigurations.tiny.config.system.build.toplevel = derivation {
      name = "nixos-system-tiny";
      system = "x86_64-linux";
      builder = "builtin:buildenv";
      derivations = [ "true" "5" "1" "${./tree}" ];
      manifest = builtins.toFile "tiny-manifest.nix" "[ ]";
    };
  };
}
`), 0o644)
	return dir
}

// TestBuildAndCopy builds a tiny toplevel into a signed cache, then copies
// it into fresh stores: with the cache's key it succeeds, with another key
// it fails.
func TestBuildAndCopy(t *testing.T) {
	needNix(t)
	ctx := context.Background()
	fl := tinyFlake(t, "closure test "+t.Name()+"\n")
	cache := filepath.Join(t.TempDir(), "cache")
	var log bytes.Buffer
	sk, _ := GenerateKey("")
	res, err := Build(ctx, BuildOptions{FlakeRef: "path:" + fl, Hosts: []string{"tiny"}, Cache: cache, Log: &log, Key: sk})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	s := res.Closures["tiny"]
	if s.Paths != 3 || s.NarSize == 0 || !s.Signed {
		t.Errorf("summary %+v", s)
	}
	if _, err := os.Stat(filepath.Join(cache, "nix-cache-info")); err != nil {
		t.Error(err)
	}
	// The secret key is nowhere in the cache.
	filepath.Walk(cache, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			if bytes.Contains(data, []byte("secret")) || bytes.Contains(data, []byte(sk.String()[len(sk.Name)+1:])) {
				t.Errorf("%s mentions a secret or holds the secret key", p)
			}
		}
		return nil
	})
	if res.PublicKey != sk.Public().String() {
		t.Errorf("public key %s, want %s", res.PublicKey, sk.Public())
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "nixlos-signing-*")); len(left) > 0 {
		t.Errorf("signing key files left behind: %v", left)
	}
	key, _ := ParsePublicKey(res.PublicKey)
	src := &Source{URL: "file://" + cache, Where: "test cache", Key: key}
	root := t.TempDir()
	log.Reset()
	if err := src.Copy(ctx, root, s.Toplevel, &log); err != nil {
		t.Fatalf("copy with the cache's key: %v\n%s", err, log.String())
	}
	if _, err := os.Stat(filepath.Join(root, s.Toplevel, "etc/motd")); err != nil {
		t.Errorf("copied system: %v", err)
	}
	other, _ := GenerateKey(key.Name)
	bad := &Source{URL: "file://" + cache, Where: "test cache", Key: other.Public()}
	log.Reset()
	err = bad.Copy(ctx, t.TempDir(), s.Toplevel, &log)
	if err == nil || !strings.Contains(log.String(), "lacks a valid signature") {
		t.Errorf("copy with another key: err %v\n%s", err, log.String())
	}
}

func TestLocateNotFound(t *testing.T) {
	k, _ := GenerateKey("x")
	_, err := Locate(context.Background(), LocateOptions{
		Toplevel: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-top", PublicKey: k.Public().String(),
		Devices: []string{"/dev/null", filepath.Join(t.TempDir(), "none")},
	})
	if err == nil || !strings.Contains(err.Error(), ErrNotFound.Error()) {
		t.Errorf("err %v, want ErrNotFound", err)
	}
}

func TestMediaCandidates(t *testing.T) {
	disks := []hw.Disk{
		{Path: "/dev/sda", Kind: hw.KindDisk, BootMedium: true, Partitions: []hw.Partition{
			{Path: "/dev/sda1", PartName: "NIXLOS-ESP"}, {Path: "/dev/sda2", PartName: CachePartName}}},
		{Path: "/dev/sr0", Kind: hw.KindCDROM, SizeBytes: 0},       // empty drive
		{Path: "/dev/sr1", Kind: hw.KindCDROM, SizeBytes: 1 << 30}, // a disc, not the boot medium
		{Path: "/dev/vda", Kind: hw.KindDisk, Partitions: []hw.Partition{{Path: "/dev/vda1"}}},
		{Path: "/dev/sdb", Kind: hw.KindDisk, BootMedium: true}, // a hybrid ISO on a stick
	}
	got := strings.Join(MediaCandidates(disks), " ")
	if want := "/dev/sda2 /dev/sda /dev/sda1 /dev/sdb /dev/sr1"; got != want {
		t.Errorf("candidates %q, want %q", got, want)
	}
}

func TestBuildNoToplevel(t *testing.T) {
	needNix(t)
	fl := t.TempDir()
	os.WriteFile(filepath.Join(fl, "flake.nix"), []byte(`{ outputs = { self }: { nixosConfigurations.a.config = { }; }; }`), 0o644)
	_, err := Build(context.Background(), BuildOptions{FlakeRef: "path:" + fl, Hosts: []string{"a"}, Cache: filepath.Join(t.TempDir(), "c")})
	if !errors.Is(err, ErrNoToplevel) {
		t.Errorf("err %v, want ErrNoToplevel", err)
	}
}

// TestUnsignedInputs: a cache written without a key (mkiso build without
// --closure: the flake's inputs only) gives a Source without a key whose
// CopyInputs copies content-addressed paths (a flake's source) — but a
// system (input-addressed) copied unsigned from it is refused.
func TestUnsignedInputs(t *testing.T) {
	needNix(t)
	ctx := context.Background()
	fl := tinyFlake(t, "unsigned test "+t.Name()+"\n")
	var log bytes.Buffer
	out, err := runNix(ctx, "", &log, nil, "flake", "archive", "--json", "path:"+fl)
	if err != nil {
		t.Fatal(err)
	}
	var archived struct{ Path string }
	if err := json.Unmarshal(out, &archived); err != nil || archived.Path == "" {
		t.Fatalf("archive: %s %v", out, err)
	}
	sys, err := runNix(ctx, "", &log, nil, "build", "--no-link", "--json", "path:"+fl+"#"+ToplevelAttr("tiny"))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	var built []struct{ Outputs map[string]string }
	if err := json.Unmarshal(sys, &built); err != nil || len(built) != 1 {
		t.Fatalf("build output %s: %v", sys, err)
	}
	toplevel := built[0].Outputs["out"]
	cache := filepath.Join(t.TempDir(), "cache")
	if err := Copy(ctx, BuildOptions{Cache: cache, Log: &log}, nil, []string{archived.Path, toplevel}); err != nil {
		t.Fatalf("unsigned copy: %v\n%s", err, log.String())
	}
	src, err := Locate(ctx, LocateOptions{Toplevel: archived.Path, Server: "", Devices: []string{}})
	if err == nil || src != nil {
		t.Fatalf("Locate found a cache among no devices: %v", err)
	}
	src = &Source{URL: "file://" + cache, Where: "test cache"} // no key, as for an inputs-only cache
	root := t.TempDir()
	log.Reset()
	if err := src.CopyInputs([]string{archived.Path})(ctx, root, &log); err != nil {
		t.Fatalf("copy the input: %v\n%s", err, log.String())
	}
	if _, err := os.Stat(filepath.Join(root, archived.Path, "flake.nix")); err != nil {
		t.Errorf("copied input: %v", err)
	}
	log.Reset()
	if err := src.Copy(ctx, t.TempDir(), toplevel, &log); err == nil || !strings.Contains(log.String(), "lacks a valid signature") {
		t.Errorf("an unsigned system copied with no key trusted: %v\n%s", err, log.String())
	}
}
