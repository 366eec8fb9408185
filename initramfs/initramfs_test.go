package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/initramfs/elfdeps"
	"github.com/nixlos/nixlos/internal/testenv"
)

// testCacheDir is shared by the build tests of one run so that only the
// first pays for the u-root build. NIXLOS_TEST_CACHE reuses one across runs.
var testCacheDir string

func TestMain(m *testing.M) {
	dir := os.Getenv("NIXLOS_TEST_CACHE")
	if dir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(d, "nixlos", "initramfs-test")
		}
	}
	testCacheDir = dir
	os.Exit(m.Run())
}

func skipSlowBuild(t testing.TB) {
	t.Helper()
	testenv.Short(t, "full initramfs build (u-root compile, ~1 min cold): skipped with -short")
	testenv.Tools(t, "go")
	testenv.Kernel(t)
}

// archive is an initramfs read back: the effective entry per name (later
// wins, as when the kernel unpacks) and file contents hashes.
type archive struct {
	entries map[string]cpio.Entry
	data    map[string][]byte // symlink targets and files ≤ 64 KiB
	sums    map[string][32]byte
	order   []string
}

func readArchive(t testing.TB, p string) *archive {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := &archive{entries: map[string]cpio.Entry{}, data: map[string][]byte{}, sums: map[string][32]byte{}}
	err = cpio.Walk(f, func(e cpio.Entry, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		a.entries[e.Name] = e
		a.order = append(a.order, e.Name)
		a.sums[e.Name] = sha256.Sum256(b)
		if len(b) <= 64<<10 || e.Mode&cpio.ModeType == cpio.ModeSymlink {
			a.data[e.Name] = b
		} else {
			delete(a.data, e.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return a
}

// resolve follows symlinks inside the archive (absolute or relative) and
// returns the final regular file's name, or "" when the chain breaks.
func (a *archive) resolve(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	for i := 0; i < 40; i++ {
		// Resolve directory components first.
		parts := strings.Split(name, "/")
		cur := ""
		for j, part := range parts {
			next := path.Join(cur, part)
			e, ok := a.entries[next]
			if !ok {
				return ""
			}
			if e.Mode&cpio.ModeType == cpio.ModeSymlink {
				target := string(a.data[next])
				var base string
				if strings.HasPrefix(target, "/") {
					base = strings.TrimPrefix(path.Clean(target), "/")
				} else {
					base = path.Join(path.Dir(next), target)
				}
				name = path.Join(append([]string{base}, parts[j+1:]...)...)
				goto again
			}
			cur = next
		}
		if a.entries[name].Mode&cpio.ModeType == cpio.ModeRegular {
			return name
		}
		return ""
	again:
	}
	return ""
}

func testFlake(t testing.TB) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "hosts"), 0o755)
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = _: { }; }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "hosts", "laptop.nix"), []byte("{ }\n"), 0o644)
	return dir
}

func buildForTest(t testing.TB, spec Spec) (string, *Report, string) {
	t.Helper()
	if spec.Output == "" {
		spec.Output = filepath.Join(t.TempDir(), "initrd")
	}
	if spec.CacheDir == "" {
		spec.CacheDir = testCacheDir
	}
	var progress bytes.Buffer
	p, rep, err := Build(context.Background(), spec, &progress)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, progress.String())
	}
	t.Logf("build progress:\n%s", progress.String())
	return p, rep, progress.String()
}

// TestBuild checks the archive's contents: init and uinit, the installer,
// modules with all their dependencies (modules.dep parsed here, read from
// the archive itself), tools with every library ldd names, the flake and
// manifest, no age key, normalised metadata.
func TestBuild(t *testing.T) {
	skipSlowBuild(t)
	flake := testFlake(t)
	manifest := []byte(`{"version":1,"hosts":{}}`)
	p, rep, _ := buildForTest(t, Spec{FlakeDir: flake, Manifest: manifest, Version: "1.2.3-test", SourceDateEpoch: 1700000000})
	a := readArchive(t, p)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("initrd mode %v without a key, want 0644", fi.Mode().Perm())
	}
	if rep.Bytes != fi.Size() {
		t.Errorf("report says %d bytes, file has %d", rep.Bytes, fi.Size())
	}

	// init, uinit → installer, shells.
	if a.resolve("init") == "" {
		t.Error("no /init")
	}
	if got := string(a.data["bin/uinit"]); a.entries["bin/uinit"].Mode&cpio.ModeType != cpio.ModeSymlink || got != "installer" {
		t.Errorf("bin/uinit = %q (mode %o), want symlink to installer", got, a.entries["bin/uinit"].Mode)
	}
	inst := a.resolve("bin/uinit")
	if inst != "bin/installer" || a.entries[inst].Mode&0o111 == 0 {
		t.Fatalf("bin/uinit resolves to %q, want executable bin/installer", inst)
	}
	if got := a.resolve("bin/sh"); got != "usr/bin/dash" {
		t.Errorf("bin/sh resolves to %q, want usr/bin/dash", got)
	}
	if a.resolve("bin/busybox") == "" {
		t.Error("no bin/busybox")
	}
	if a.resolve("bin/defaultsh") == "" || a.resolve("bbin/modprobe") == "" || a.resolve("bbin/gosh") == "" {
		t.Error("u-root defaultsh, modprobe or gosh missing")
	}
	// The installer carries the version given.
	if !bytes.Contains(installerBytes(t, p), []byte("1.2.3-test")) {
		t.Error("installer binary does not contain the version string set with -ldflags")
	}

	// Metadata.
	for n, e := range a.entries {
		if e.UID != 0 || e.GID != 0 {
			t.Errorf("%s: uid/gid %d/%d", n, e.UID, e.GID)
		}
		if e.MTime != 1700000000 {
			t.Errorf("%s: mtime %d, want SourceDateEpoch", n, e.MTime)
			break
		}
	}

	// Flake and manifest; no key.
	for _, f := range []string{"flake.nix", "hosts/laptop.nix"} {
		want, _ := os.ReadFile(filepath.Join(flake, f))
		if got := a.data["etc/nixlos/flake/"+f]; !bytes.Equal(got, want) {
			t.Errorf("flake file %s: got %q want %q", f, got, want)
		}
	}
	if !bytes.Equal(a.data["etc/nixlos/manifest.json"], manifest) {
		t.Errorf("manifest: got %q", a.data["etc/nixlos/manifest.json"])
	}
	if _, ok := a.entries["etc/nixlos/age.key"]; ok || rep.AgeKey {
		t.Error("age key present though none was given")
	}

	// Modules: parse modules.dep from the archive; every module in it
	// must have each dependency in it; every default module must be there
	// (or built in).
	kver := rep.KernelVersion
	modDir := "lib/modules/" + kver
	depPath := a.resolve(modDir + "/modules.dep")
	if depPath == "" {
		t.Fatal("no modules.dep in the archive")
	}
	dep, ok := a.data[depPath]
	if !ok {
		// modules.dep is bigger than 64 KiB: read it from the host and
		// check the archive's copy by hash.
		b, err := os.ReadFile(filepath.Join("/lib/modules", kver, "modules.dep"))
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(b) != a.sums[depPath] {
			t.Fatal("archive's modules.dep differs from the kernel's")
		}
		dep = b
	}
	deps := map[string][]string{}
	byName := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(dep))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(strings.Replace(sc.Text(), ":", " ", 1))
		if len(fields) == 0 {
			continue
		}
		deps[fields[0]] = fields[1:]
		base := strings.TrimSuffix(path.Base(fields[0]), ".ko")
		byName[strings.ReplaceAll(base, "-", "_")] = fields[0]
	}
	builtin, _ := os.ReadFile(filepath.Join("/lib/modules", kver, "modules.builtin"))
	nmods := 0
	realModDir := path.Dir(depPath)
	for n := range a.entries {
		if !strings.HasPrefix(n, realModDir+"/") || !strings.HasSuffix(n, ".ko") {
			continue
		}
		nmods++
		rel := strings.TrimPrefix(n, realModDir+"/")
		for _, d := range deps[rel] {
			if a.resolve(modDir+"/"+d) == "" {
				t.Errorf("module %s: dependency %s missing", rel, d)
			}
		}
		// Files are kept as the kernel ships them.
		hb, err := os.ReadFile(filepath.Join("/lib/modules", kver, rel))
		if err != nil || sha256.Sum256(hb) != a.sums[n] {
			t.Errorf("module %s differs from the host's copy", rel)
		}
	}
	for _, m := range DefaultModules {
		if rel, ok := byName[m]; ok {
			if a.resolve(modDir+"/"+rel) == "" {
				t.Errorf("module %s (%s) missing", m, rel)
			}
		} else if !regexp.MustCompile(`(?m)/` + strings.ReplaceAll(regexp.QuoteMeta(m), "_", "[-_]") + `\.ko$`).Match(builtin) {
			t.Errorf("module %s neither in modules.dep nor built in", m)
		}
	}
	for _, f := range []string{"modules.dep", "modules.alias", "modules.builtin", "modules.order"} {
		if a.resolve(modDir+"/"+f) == "" {
			t.Errorf("%s missing", f)
		}
	}
	t.Logf("%d modules", nmods)

	// Tools and their libraries: every library ldd lists for a host tool
	// must be in the archive (at the path the tool's loader will open).
	checked := 0
	for _, tool := range DefaultTools {
		hp := elfdeps.LookTool(tool)
		if hp == "" {
			continue
		}
		var inArchive string
		if tool == "busybox" {
			inArchive = "bin/busybox"
		} else {
			inArchive = strings.TrimPrefix(hp, "/")
		}
		real := a.resolve(inArchive)
		if real == "" {
			t.Errorf("tool %s: %s not in the archive", tool, inArchive)
			continue
		}
		hreal, _ := filepath.EvalSymlinks(hp)
		hb, _ := os.ReadFile(hreal)
		if sha256.Sum256(hb) != a.sums[real] {
			t.Errorf("tool %s: archive copy differs from %s", tool, hreal)
		}
		for _, lib := range lddLibs(t, hp) {
			if a.resolve(lib) == "" {
				t.Errorf("tool %s: library %s (from ldd) missing", tool, lib)
			}
		}
		checked++
	}
	if checked < 20 {
		t.Errorf("only %d tools checked", checked)
	}
	for _, f := range []string{"etc/lvm/lvm.conf", "etc/nsswitch.conf", "etc/passwd", "etc/nix/nix.conf"} {
		if _, ok := a.entries[f]; !ok {
			t.Errorf("%s missing", f)
		}
	}
	for _, s := range rep.Segments {
		t.Logf("segment %-7s %9d bytes cacheHit=%v %s", s.Name, s.Bytes, s.CacheHit, s.Duration.Round(time.Millisecond))
	}
}

// installerBytes reads bin/installer's contents from an initrd.
func installerBytes(t testing.TB, p string) []byte {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []byte
	err = cpio.Walk(f, func(e cpio.Entry, r io.Reader) error {
		if e.Name == "bin/installer" {
			b, err := io.ReadAll(r)
			out = b
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lddLibs runs ldd on a host binary and returns every library path it
// prints (including the interpreter); nil for static binaries.
func lddLibs(t testing.TB, bin string) []string {
	t.Helper()
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil
		}
		t.Fatalf("ldd %s: %v\n%s", bin, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "=> "); i >= 0 {
			f := strings.Fields(line[i+3:])
			if len(f) > 0 && strings.HasPrefix(f[0], "/") {
				libs = append(libs, f[0])
			}
		} else if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "/") {
			libs = append(libs, f[0])
		}
	}
	return libs
}

// TestELFWalkMatchesLdd compares the DT_NEEDED walk with ldd for every
// default tool on this host (by real path).
func TestELFWalkMatchesLdd(t *testing.T) {
	testenv.Tools(t, "ldd")
	n := 0
	for _, tool := range DefaultTools {
		p := elfdeps.LookTool(tool)
		if p == "" {
			continue
		}
		n++
		deps, err := elfdeps.LibResolver{}.Walk(p)
		if err != nil {
			t.Errorf("%s: %v", tool, err)
			continue
		}
		got := map[string]bool{}
		for _, l := range append(deps.Libs, deps.Interpreters...) {
			r, err := filepath.EvalSymlinks(l)
			if err != nil {
				t.Errorf("%s: %s: %v", tool, l, err)
			}
			got[r] = true
		}
		want := map[string]bool{}
		for _, l := range lddLibs(t, p) {
			r, err := filepath.EvalSymlinks(l)
			if err != nil {
				t.Errorf("%s: ldd path %s: %v", tool, l, err)
			}
			want[r] = true
		}
		if !equalSets(got, want) {
			t.Errorf("%s: walk %v\n ldd %v", tool, keys(got), keys(want))
		}
	}
	if n == 0 {
		testenv.Missing(t, "the default tools (util-linux, cryptsetup, lvm2, mdadm, …)", "`make deps`")
	}
	t.Logf("%d tools compared with ldd", n)
}

func equalSets(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestBuildAgeKey: the key is at /etc/nixlos/age.key with mode 0600,
// the initrd file itself is 0600, and the key never reaches the progress
// output or the report.
func TestBuildAgeKey(t *testing.T) {
	skipSlowBuild(t)
	// Random characters, like a real key: lz4 would keep them verbatim.
	rnd := make([]byte, 58)
	rand.Read(rnd)
	for i := range rnd {
		rnd[i] = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"[rnd[i]%32]
	}
	key := []byte("AGE-SECRET-KEY-1" + strings.ToUpper(string(rnd)) + "\n")
	p, rep, progress := buildForTest(t, Spec{AgeKey: key})
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, key[len("AGE-SECRET-KEY-1"):len(key)-1]) {
		t.Error("the initrd holds the key in plain text (it must sit in a zstd segment, never lz4)")
	}
	var names []string
	for _, seg := range rep.Segments {
		names = append(names, seg.Name)
	}
	if got := strings.Join(names, " "); got != "base modules key tools build" {
		t.Errorf("segments %q, want base modules key tools build", got)
	}
	a := readArchive(t, p)
	e, ok := a.entries["etc/nixlos/age.key"]
	if !ok {
		t.Fatal("age key missing")
	}
	if e.Mode&0o7777 != 0o600 || e.Mode&cpio.ModeType != cpio.ModeRegular || e.UID != 0 {
		t.Errorf("age key mode %o uid %d, want regular 0600 root", e.Mode, e.UID)
	}
	if !bytes.Equal(a.data["etc/nixlos/age.key"], key) {
		t.Error("age key contents differ")
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("initrd with a key has mode %v, want 0600", fi.Mode().Perm())
	}
	if !rep.AgeKey {
		t.Error("report.AgeKey false")
	}
	if strings.Contains(progress, "AGE-SECRET-KEY") {
		t.Error("progress output contains the key")
	}
	// No cache file holds the key.
	filepath.WalkDir(testCacheDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if strings.HasSuffix(p, ".json") {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte("AGE-SECRET-KEY")) {
				t.Errorf("cache file %s holds the key", p)
			}
		}
		return nil
	})
}

// TestBuildDeterministic: a cached build and a NoCache build (u-root
// compiled again) of the same inputs are byte-identical. The installer is
// built once and given to both, so that other packages' sources changing
// in between cannot make the builds differ.
func TestBuildDeterministic(t *testing.T) {
	skipSlowBuild(t)
	modDir, err := FindModuleDir("")
	if err != nil {
		t.Fatal(err)
	}
	inst := filepath.Join(t.TempDir(), "installer")
	if err := BuildInstaller(context.Background(), modDir, nixlosModule+"/cmd/installer", "det", inst); err != nil {
		t.Fatal(err)
	}
	flake := testFlake(t)
	spec := Spec{FlakeDir: flake, Manifest: []byte("{}"), SourceDateEpoch: 1234567890, InstallerBinary: inst}
	p1, rep1, _ := buildForTest(t, spec)
	spec.NoCache = true
	p2, rep2, _ := buildForTest(t, spec)
	for _, s := range rep2.Segments {
		if s.CacheHit {
			t.Errorf("NoCache build hit the cache for %s", s.Name)
		}
	}
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if !bytes.Equal(b1, b2) {
		var off1, off2 int64
		for i := range rep1.Segments {
			s1, s2 := rep1.Segments[i], rep2.Segments[i]
			if s1.Bytes != s2.Bytes || !bytes.Equal(b1[off1:off1+s1.Bytes], b2[off2:off2+s2.Bytes]) {
				t.Errorf("segment %s differs (%d vs %d bytes)", s1.Name, s1.Bytes, s2.Bytes)
			}
			off1 += s1.Bytes
			off2 += s2.Bytes
		}
		t.Fatalf("builds differ: %d vs %d bytes", len(b1), len(b2))
	}
	t.Logf("byte-identical: %d bytes, sha256 %x", len(b1), sha256.Sum256(b1))
}

// TestWarmRebuild: after editing the flake only, a rebuild hits the cache
// for base, tools and modules and takes ≤ 3 s; the edit is in the output.
func TestWarmRebuild(t *testing.T) {
	skipSlowBuild(t)
	flake := testFlake(t)
	buildForTest(t, Spec{FlakeDir: flake}) // warm the cache
	os.WriteFile(filepath.Join(flake, "hosts", "laptop.nix"), []byte("{ edited = true; }\n"), 0o644)
	start := time.Now()
	p, rep, _ := buildForTest(t, Spec{FlakeDir: flake})
	d := time.Since(start)
	t.Logf("warm rebuild after a flake edit: %s (%d bytes)", d.Round(time.Millisecond), rep.Bytes)
	for _, s := range rep.Segments {
		if s.Name != "build" && !s.CacheHit {
			t.Errorf("segment %s rebuilt on a warm rebuild", s.Name)
		}
	}
	if d > 3*time.Second {
		t.Errorf("warm rebuild took %s, goal ≤ 3s", d)
	}
	a := readArchive(t, p)
	if string(a.data["etc/nixlos/flake/hosts/laptop.nix"]) != "{ edited = true; }\n" {
		t.Error("the flake edit is not in the rebuilt initrd")
	}
}

// TestBuildBadInput: a clear error, before any work, for bad specs.
func TestBuildBadInput(t *testing.T) {
	mods := "/lib/modules/none"
	if v, err := DefaultKernelVersion(); err == nil {
		mods = "/lib/modules/" + v
	}
	for _, tc := range []struct {
		name, want string
		spec       Spec
	}{
		{"no output", "no output", Spec{}},
		{"bad compression", "lzma", Spec{Output: "x", Compression: "lzma", ModulesDir: mods}},
		{"flake not a dir", "/nonexistent/flake", Spec{Output: "x", FlakeDir: "/nonexistent/flake", ModulesDir: mods}},
		{"no modules dir", "/nonexistent/modules", Spec{Output: "x", ModulesDir: "/nonexistent/modules"}},
		{"missing tool", "no-such-tool-xyz", Spec{Output: "x", ModulesDir: mods, Tools: []string{"no-such-tool-xyz"}}},
		{"bad go module dir", "does not require", Spec{Output: filepath.Join(t.TempDir(), "x"), ModulesDir: mods, GoModuleDir: t.TempDir(), CacheDir: t.TempDir()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "bad go module dir" {
				os.WriteFile(filepath.Join(tc.spec.GoModuleDir, "go.mod"), []byte("module x\n"), 0o644)
			}
			_, _, err := Build(context.Background(), tc.spec, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// BenchmarkWarmRebuild measures a rebuild with every cached segment hit.
func BenchmarkWarmRebuild(b *testing.B) {
	skipSlowBuild(b)
	flake := testFlake(b)
	out := filepath.Join(b.TempDir(), "initrd")
	spec := Spec{FlakeDir: flake, Output: out, CacheDir: testCacheDir}
	if _, _, err := Build(context.Background(), spec, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := Build(context.Background(), spec, nil); err != nil {
			b.Fatal(err)
		}
	}
}
