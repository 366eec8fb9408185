package flake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
)

// example is the repository's example flake.
const example = "../examples/nix-los"

func needNix(t testing.TB) {
	t.Helper()
	testenv.Tools(t, "nix")
}

// writeFlake makes a plain (non-git) flake directory holding flake.nix.
func writeFlake(t *testing.T, flakeNix string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flakeNix), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const hostWithLayout = `{ config = { nixpkgs.hostPlatform = "x86_64-linux";
  disko.devices.disk.main = { type = "disk"; device = "/dev/vda";
    content = { type = "gpt"; partitions.root = { size = "100%"; content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; }; }; }; }; }; }`

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "somefile")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, tc := range []struct {
		name     string
		path     func(t *testing.T) string
		nix      Nix
		needsNix bool
		want     []string // substrings of the message
	}{
		{"path does not exist", func(t *testing.T) string { return "/nonexistent/nixlos-flake" }, Nix{}, false,
			[]string{"/nonexistent/nixlos-flake", "does not exist", "fix: give the directory that holds flake.nix"}},
		{"a file, not a directory", func(t *testing.T) string { return file }, Nix{}, false,
			[]string{file, "is a file, not a directory", "fix:"}},
		{"flake.nix itself", func(t *testing.T) string { return filepath.Join(writeFlake(t, "{}"), "flake.nix") }, Nix{}, false,
			[]string{"is a file, not a directory", "fix: give its directory"}},
		{"no flake.nix", func(t *testing.T) string { return t.TempDir() }, Nix{}, false,
			[]string{"no flake.nix in this directory", "fix:"}},
		{"nix not installed", func(t *testing.T) string { return writeFlake(t, "{ outputs = _: {}; }") }, Nix{Path: "nix-not-installed-here"}, false,
			[]string{"nix is not installed", "apt-get install nix-bin", "make deps"}},
		{"flake.nix syntax error", func(t *testing.T) string {
			return writeFlake(t, "{ outputs = { self }: { nixosConfigurations = ; }; }")
		}, Nix{}, true,
			[]string{"syntax error", "flake.nix:1:", "fix: fix the syntax error"}},
		{"no nixosConfigurations", func(t *testing.T) string { return writeFlake(t, "{ outputs = { self }: { packages = {}; }; }") }, Nix{}, true,
			[]string{"no nixosConfigurations output", "fix: add outputs.nixosConfigurations"}},
		{"no hosts", func(t *testing.T) string {
			return writeFlake(t, "{ outputs = { self }: { nixosConfigurations = {}; }; }")
		}, Nix{}, true,
			[]string{"nixosConfigurations has no hosts", "fix: add at least one host"}},
		{"evaluation error", func(t *testing.T) string {
			return writeFlake(t, `{ outputs = { self }: { nixosConfigurations = throw "broken outputs"; }; }`)
		}, Nix{}, true, []string{"broken outputs", "fix:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needsNix {
				needNix(t)
			}
			path := tc.path(t)
			_, _, err := Hosts(ctx, path, Options{Nix: tc.nix})
			if err == nil {
				t.Fatalf("Hosts(%s) succeeded, want an input error", path)
			}
			if code := errs.Code(err); code != 2 {
				t.Errorf("exit code %d, want 2 (err: %v)", code, err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "goroutine ") || strings.Contains(msg, "panic") {
				t.Errorf("message has a stack trace:\n%s", msg)
			}
		})
	}
}

func TestHostWithoutDiskLayout(t *testing.T) {
	needNix(t)
	dir := writeFlake(t, `{ outputs = { self }: { nixosConfigurations = {
	  bare = { config = { nixpkgs.hostPlatform = "aarch64-linux"; }; };
	  empty = { config = { nixpkgs.hostPlatform = "x86_64-linux"; disko.devices = { disk = {}; }; }; };
	  full = `+hostWithLayout+`; }; }; }`)
	_, m, err := Hosts(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.HostNames(); !reflect.DeepEqual(got, []string{"bare", "empty", "full"}) {
		t.Fatalf("hosts %v, want bare empty full", got)
	}
	if m.Hosts["bare"].Disko != nil || m.Hosts["bare"].HasLayout() || m.Hosts["empty"].HasLayout() {
		t.Errorf("bare/empty hosts have a layout: %+v", m.Hosts)
	}
	if m.Hosts["bare"].System != "aarch64-linux" || m.Hosts["bare"].AgeKeyFile != DefaultAgeKeyFile {
		t.Errorf("bare host = %+v", m.Hosts["bare"])
	}
	var table bytes.Buffer
	WriteTable(&table, m)
	if !strings.Contains(table.String(), "no disk layout") {
		t.Errorf("table does not mark the host:\n%s", table.String())
	}
	for _, name := range []string{"bare", "empty"} {
		_, err := m.Select(name)
		if errs.Code(err) != 2 || !strings.Contains(err.Error(), "no disk layout") || !strings.Contains(err.Error(), "disko") {
			t.Errorf("Select(%s) = %v, want a refusal naming the fix", name, err)
		}
	}
	if _, err := m.Select("nope"); errs.Code(err) != 2 || !strings.Contains(err.Error(), "bare, empty, full") {
		t.Errorf("Select(nope) = %v", err)
	}
	h, err := m.Select("full")
	if err != nil || !reflect.DeepEqual(h.Disks(), []Disk{{"main", "/dev/vda"}}) {
		t.Errorf("Select(full) = %+v, %v", h, err)
	}
	if m.Flake.Dirty || m.Flake.Rev != "" || !strings.HasPrefix(m.Flake.NarHash, "sha256-") {
		t.Errorf("plain directory flake info = %+v", m.Flake)
	}
}

// TestExampleMatchesNixEval runs real nix on the example flake: each host's
// manifest disko must equal `nix eval --json .#nixosConfigurations.HOST.config.disko.devices`.
func TestExampleMatchesNixEval(t *testing.T) {
	needNix(t)
	ctx := context.Background()
	f, m, err := Hosts(ctx, example, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.HostNames(); !reflect.DeepEqual(got, []string{"laptop", "server"}) {
		t.Fatalf("hosts %v, want laptop server", got)
	}
	for _, host := range m.HostNames() {
		out, err := Nix{}.Run(ctx, "eval", "--json", f.Dir+"#nixosConfigurations."+host+".config.disko.devices")
		if err != nil {
			t.Fatal(err)
		}
		var want, got any
		json.Unmarshal(out, &want)
		if err := json.Unmarshal(m.Hosts[host].Disko, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: manifest disko differs from nix eval:\n got %s\nwant %s", host, m.Hosts[host].Disko, out)
		}
		h := m.Hosts[host]
		if h.System != "x86_64-linux" || h.AgeKeyFile != "/var/lib/sops-nix/key.txt" || h.SopsFile != "secrets/secrets.yaml" {
			t.Errorf("%s: %+v", host, h)
		}
	}
	if d := m.Hosts["laptop"].Disks(); !reflect.DeepEqual(d, []Disk{{"main", "/dev/vda"}}) {
		t.Errorf("laptop disks %v", d)
	}
	if d := m.Hosts["server"].Disks(); !reflect.DeepEqual(d, []Disk{{"disk1", "/dev/vda"}, {"disk2", "/dev/vdb"}}) {
		t.Errorf("server disks %v", d)
	}
	if m.Flake.Dir != EmbeddedDir || (m.Flake.Rev == "") != m.Flake.Dirty || m.Flake.NarHash == "" {
		t.Errorf("flake info %+v", m.Flake)
	}
	var sum bytes.Buffer
	if err := WriteSummary(&sum, m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1 ESP", "2 luks", "luks crypted > lvm_pv > vg pool", "lv home", "1 boot", "3 mdadm", "metadata 1.2", "1 primary"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

func TestFindGitRef(t *testing.T) {
	f, err := Find(example)
	if err != nil {
		t.Fatal(err)
	}
	if !f.IsGit() || f.Subdir != "examples/nix-los" || !strings.HasPrefix(f.Ref(), "git+file://") || !strings.HasSuffix(f.Ref(), "?dir=examples%2Fnix-los") {
		t.Errorf("Find(example) = %+v, ref %s", f, f.Ref())
	}
	dir := writeFlake(t, "{}")
	f, err = Find(dir)
	if err != nil || f.IsGit() || f.Ref() != "path:"+dir {
		t.Errorf("Find(plain) = %+v %v", f, err)
	}
}

func TestNixString(t *testing.T) {
	needNix(t)
	for _, s := range []string{`plain`, `quote " and \ backslash`, "${interp} $x ''", "tab\tnl\n"} {
		out, err := Nix{}.Run(context.Background(), "eval", "--json", "--expr", nixString(s))
		if err != nil {
			t.Fatal(err)
		}
		var got string
		json.Unmarshal(out, &got)
		if got != s {
			t.Errorf("nixString(%q) evaluates to %q", s, got)
		}
	}
}

func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.invalid"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func TestCopy(t *testing.T) {
	ctx := context.Background()
	t.Run("plain directory skips result symlinks", func(t *testing.T) {
		dir := writeFlake(t, "{}")
		os.MkdirAll(filepath.Join(dir, "hosts/a"), 0o755)
		os.WriteFile(filepath.Join(dir, "hosts/a/default.nix"), []byte("{}"), 0o644)
		os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
		os.Symlink("/nix/store/xyz-system", filepath.Join(dir, "result"))
		os.Symlink("/nix/store/xyz-system", filepath.Join(dir, "result-1"))
		os.Symlink("flake.nix", filepath.Join(dir, "link.nix"))
		f, _ := Find(dir)
		dst := t.TempDir()
		files, err := Copy(ctx, f, dst)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"flake.nix", "hosts/a/default.nix", "link.nix", "run.sh"}
		if !reflect.DeepEqual(files, want) {
			t.Errorf("files %v, want %v", files, want)
		}
		if _, err := os.Lstat(filepath.Join(dst, "result")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("result symlink copied")
		}
		if st, _ := os.Stat(filepath.Join(dst, "run.sh")); st == nil || st.Mode().Perm() != 0o755 {
			t.Errorf("run.sh mode not kept: %v", st)
		}
		if l, _ := os.Readlink(filepath.Join(dst, "link.nix")); l != "flake.nix" {
			t.Errorf("symlink not kept: %q", l)
		}
	})
	t.Run("git repo keeps .git and only tracked files", func(t *testing.T) {
		testenv.Tools(t, "git")
		dir := writeFlake(t, "{}")
		os.WriteFile(filepath.Join(dir, "tracked.nix"), []byte("{}"), 0o644)
		gitRun(t, dir, "init", "-q")
		gitRun(t, dir, "add", "flake.nix", "tracked.nix")
		gitRun(t, dir, "commit", "-q", "-m", "x")
		os.WriteFile(filepath.Join(dir, "untracked.nix"), []byte("{}"), 0o644)
		f, _ := Find(dir)
		dst := t.TempDir()
		files, err := Copy(ctx, f, dst)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(files, []string{"flake.nix", "tracked.nix"}) {
			t.Errorf("files %v", files)
		}
		if _, err := os.Stat(filepath.Join(dst, "untracked.nix")); err == nil {
			t.Errorf("untracked file copied")
		}
		out, err := exec.Command("git", "-C", dst, "status", "--porcelain").CombinedOutput()
		if err != nil || len(out) != 0 {
			t.Errorf("copy is not the same clean git repo: %v %s", err, out)
		}
	})
	t.Run("subdirectory of a git repo", func(t *testing.T) {
		f, err := Find(example)
		if err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		files, err := Copy(ctx, f, dst)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"flake.nix", "flake.lock", "hosts/laptop/disko.nix", "lib/system-tree/bin/switch-to-configuration"} {
			if _, err := os.Stat(filepath.Join(dst, want)); err != nil {
				t.Errorf("%s not copied (files %v)", want, files)
			}
		}
		if _, err := os.Stat(filepath.Join(dst, ".git")); err == nil {
			t.Errorf("parent repo's .git copied into a subdirectory flake")
		}
		if st, _ := os.Stat(filepath.Join(dst, "lib/system-tree/bin/switch-to-configuration")); st == nil || st.Mode().Perm()&0o111 == 0 {
			t.Errorf("executable bit lost")
		}
	})
}
