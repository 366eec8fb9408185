package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
)

func TestResolveEpoch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = { self }: { }; }"), 0o644)
	plain, err := flake.Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	gitDir := newGitFlake(t, map[string]string{"flake.nix": "{ outputs = { self }: { }; }"}, "2001-09-09T01:46:40Z")
	gf, err := flake.Find(gitDir)
	if err != nil {
		t.Fatal(err)
	}
	i64 := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name     string
		explicit *int64
		env      string
		f        *flake.Flake
		want     int64
	}{
		{"explicit", i64(1700000000), "", plain, 1700000000},
		{"explicit 0 is clamped to 1980", i64(0), "", plain, MinEpoch},
		{"environment", nil, "1600000000", plain, 1600000000},
		{"environment before 1980 clamped", nil, "1", plain, MinEpoch},
		{"not git, no env: 0 clamped", nil, "", plain, MinEpoch},
		{"git commit time", nil, "", gf, 1000000000},
		{"env wins over git", nil, "1500000000", gf, 1500000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tc.env)
			if tc.env == "" {
				os.Unsetenv("SOURCE_DATE_EPOCH")
			}
			got, err := resolveEpoch(tc.explicit, tc.f)
			if err != nil || got != tc.want {
				t.Errorf("resolveEpoch = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := resolveEpoch(nil, plain); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("bad SOURCE_DATE_EPOCH: err %v", err)
	}
}

func TestCheckWritableLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := checkWritable(filepath.Join(dir, "a", "b")); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("checkWritable left %v behind", ents)
	}
}

func TestPrefixWriter(t *testing.T) {
	var b bytes.Buffer
	w := indent(&b)
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\n"))
	if got := b.String(); got != "  one\n  two\n" {
		t.Errorf("got %q", got)
	}
}

// newGitFlake makes a git repository holding files, committed at date.
func newGitFlake(t testing.TB, files map[string]string, date string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dir, date, "init", "-q")
	git(t, dir, date, "add", "-A")
	git(t, dir, date, "commit", "-q", "-m", "init")
	return dir
}

func git(t testing.TB, dir, date string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// copyExample copies examples/nix-los into a fresh git repository (its own
// flake, independent of this repository's state).
func copyExample(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", exampleFlake()+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy example: %v\n%s", err, out)
	}
	date := "2025-01-01T00:00:00Z"
	git(t, dir, date, "init", "-q")
	git(t, dir, date, "add", "-A")
	git(t, dir, date, "commit", "-q", "-m", "example")
	return dir
}

// readTree returns every regular file under dir (relative path → bytes).
func readTree(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestReproducible: two builds of examples/nix-los (a git copy) with the same inputs and
// SOURCE_DATE_EPOCH (and the same installer binary: the initramfs would
// otherwise compile the working tree, which other work may change between
// the builds) are byte-identical, SHA256SUMS included — the second one with
// --no-cache (u-root compiled again), so cached and fresh segments agree.
func TestReproducible(t *testing.T) {
	needBuild(t)
	// A private git copy: examples/nix-los inside this repository would
	// take its rev (in the manifest) from a work tree others commit to.
	dir := copyExample(t)
	a := filepath.Join(t.TempDir(), "out")
	build(t, testOptions(t, dir, a))
	b := filepath.Join(t.TempDir(), "out")
	opt := testOptions(t, dir, b)
	opt.NoCache = true // the second build makes every segment afresh: the cache must not change the output
	build(t, opt)
	ta, tb := readTree(t, a), readTree(t, b)
	if len(ta) == 0 || len(ta) != len(tb) {
		t.Fatalf("builds wrote %d and %d files", len(ta), len(tb))
	}
	for name, da := range ta {
		if db, ok := tb[name]; !ok || !bytes.Equal(da, db) {
			t.Errorf("%s differs between the two builds", name)
		}
	}
	if t.Failed() {
		diffInitrds(t, ta["pxe/initrd"], tb["pxe/initrd"])
	}
	for _, want := range []string{image.ISOName, image.USBName, image.SumsName, "pxe/initrd", "pxe/vmlinuz"} {
		if _, ok := ta[want]; !ok {
			t.Errorf("%s not written", want)
		}
	}
}

// TestWarmRebuildAfterFlakeEdit: with the caches warm, a rebuild after
// editing and committing one file of the flake takes ≤ 3 s (all formats).
func TestWarmRebuildAfterFlakeEdit(t *testing.T) {
	needBuild(t)
	dir := copyExample(t)
	out := filepath.Join(t.TempDir(), "out")
	opt := testOptions(t, dir, out)
	opt.Epoch = nil // the flake's commit time
	first, _ := build(t, opt)

	readme := filepath.Join(dir, "docs", "README.md")
	old, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(readme, append(old, "\nEdited by TestWarmRebuildAfterFlakeEdit.\n"...), 0o644)
	git(t, dir, "2025-01-02T00:00:00Z", "commit", "-q", "-a", "-m", "edit")

	start := time.Now()
	second, log := build(t, opt)
	secs := time.Since(start).Seconds()
	load := loadAvg()
	t.Logf("warm rebuild after a flake edit: %.2f s (load average %.1f on %d CPUs)\n%s", secs, load, runtime.NumCPU(), log)
	if second.Epoch != first.Epoch+86400 {
		t.Errorf("epoch %d after the edit, want the new commit's time %d", second.Epoch, first.Epoch+86400)
	}
	for _, s := range second.Initramfs.Segments {
		if s.Name != "build" && !s.CacheHit {
			t.Errorf("segment %s was rebuilt after a flake edit", s.Name)
		}
	}
	limit := 3.0
	if load > float64(runtime.NumCPU()) {
		limit = 10 // the shared machine is busy: keep a bound, log the figure
		t.Logf("machine loaded (load %.1f): bound relaxed to %.0f s", load, limit)
	}
	if secs > limit {
		t.Errorf("warm rebuild took %.2f s, want ≤ %.0f s", secs, limit)
	}
}

// loadAvg is the 1-minute load average (0 when unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	l, _ := strconv.ParseFloat(f[0], 64)
	return l
}

// TestAgeKeyOutputs: with an age key the outputs say so, are private
// (0600/0700) and the key's bytes are in no log; without one Inspect says
// "not embedded".
func TestAgeKeyOutputs(t *testing.T) {
	needBuild(t)
	plainOut, _ := exampleBuild(t)
	k, err := agekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.txt")
	if err := agekey.Write(keyFile, k); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	opt := testOptions(t, keyedExample(t, k), out)
	opt.AgeKey = keyFile
	res, log := build(t, opt)
	if !res.AgeKey || !strings.Contains(log, SecretWarning) {
		t.Errorf("no secret warning / ageKey flag (res.AgeKey=%v):\n%s", res.AgeKey, log)
	}
	secret := secretLine(k)
	if strings.Contains(log, secret) {
		t.Errorf("build log holds the private key")
	}
	for _, name := range []string{image.ISOName, image.USBName, image.PXEDir} {
		for _, c := range []struct {
			dir  string
			want bool
		}{{out, true}, {plainOut, false}} {
			info, err := image.Inspect(filepath.Join(c.dir, name))
			if err != nil {
				t.Fatalf("inspect %s: %v", name, err)
			}
			if info.AgeKey != c.want {
				t.Errorf("%s in %s: age key embedded = %v, want %v", name, c.dir, info.AgeKey, c.want)
			}
			if strings.Join(info.Hosts, " ") != "laptop server" {
				t.Errorf("%s: hosts %v", name, info.Hosts)
			}
		}
	}
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == out || filepath.Base(p) == image.SumsName {
			return err
		}
		st, _ := os.Lstat(p)
		if st.Mode()&0o077 != 0 && st.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("%s is mode %v with the key embedded, want private", p, st.Mode())
		}
		return nil
	})
}

// secretLine is the AGE-SECRET-KEY-1… line of k.
func secretLine(k *agekey.Key) string {
	for _, l := range strings.Split(string(k.File()), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-1") {
			return l
		}
	}
	return string(k.File())
}

// diffInitrds logs the entries that differ between two initrds.
func diffInitrds(t *testing.T, a, b []byte) {
	list := func(data []byte) map[string]string {
		m := map[string]string{}
		err := cpio.Walk(bytes.NewReader(data), func(e cpio.Entry, r io.Reader) error {
			h := sha256.New()
			io.Copy(h, r)
			m[e.Name] = fmt.Sprintf("seg %d mode %o mtime %d size %d sha %x", e.Segment, e.Mode, e.MTime, e.Size, h.Sum(nil)[:8])
			return nil
		})
		if err != nil {
			t.Logf("walk initrd: %v", err)
		}
		return m
	}
	la, lb := list(a), list(b)
	n := 0
	for name, ea := range la {
		if eb := lb[name]; ea != eb && n < 20 {
			t.Logf("initrd entry %s: %s vs %s", name, ea, eb)
			n++
		}
	}
	for name := range lb {
		if _, ok := la[name]; !ok && n < 20 {
			t.Logf("initrd entry %s only in the second build", name)
			n++
		}
	}
}

const fullHost = `{ config = { nixpkgs.hostPlatform = "x86_64-linux";
  disko.devices.disk.main = { type = "disk"; device = "/dev/vda";
    content = { type = "gpt"; partitions.root = { size = "100%"; content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; }; }; }; }; }; }`

// TestManifestSelection: without --host the menu and manifest hold every
// host with a disk layout (others are reported as skipped); --host keeps
// exactly the named hosts; a host without a layout, an unknown host, or a
// flake with no installable host is bad input.
func TestManifestSelection(t *testing.T) {
	testenv.Tools(t, "nix")
	mk := func(hosts string) *flake.Flake {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = { self }: { nixosConfigurations = {"+hosts+"}; }; }"), 0o644)
		f, err := flake.Find(dir)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	bare := ` bare = { config = { nixpkgs.hostPlatform = "x86_64-linux"; }; };`
	mixed := mk(bare + " a = " + fullHost + "; b = " + fullHost + ";")
	onlyBare := mk(bare)
	for _, tc := range []struct {
		name    string
		f       *flake.Flake
		hosts   []string
		want    string // hosts in the manifest
		skipped string
		errWant string // bad input naming this
	}{
		{"all installable", mixed, nil, "a b", "bare", ""},
		{"one host", mixed, []string{"b"}, "b", "", ""},
		{"two hosts", mixed, []string{"b", "a"}, "a b", "", ""},
		{"host without layout", mixed, []string{"bare"}, "", "", "bare"},
		{"unknown host", mixed, []string{"c"}, "", "", "c"},
		{"nothing installable", onlyBare, nil, "", "", "no host has a disk layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Profile{Flake: tc.f, Hosts: tc.hosts}
			m, skipped, err := p.manifest(context.Background())
			if tc.errWant != "" {
				if errs.Code(err) != 2 || !strings.Contains(err.Error(), tc.errWant) {
					t.Fatalf("err %v (exit %d), want bad input naming %q", err, errs.Code(err), tc.errWant)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(m.HostNames(), " "); got != tc.want {
				t.Errorf("hosts %q, want %q", got, tc.want)
			}
			if got := strings.Join(skipped, " "); got != tc.skipped {
				t.Errorf("skipped %q, want %q", got, tc.skipped)
			}
		})
	}
}
