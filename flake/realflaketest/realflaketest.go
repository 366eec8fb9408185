// Package realflaketest assembles the realflakes test fixtures
// (flake/testdata/realflakes): flakes in the usual layout (hosts/NAME/,
// nixos/modules, secrets/) whose hosts import the real disko and sops-nix
// NixOS modules.
//
// Their inputs are written as a user writes them (github:…). Flake copies
// a fixture into a temporary directory and points the inputs, as path:
// inputs, at the source trees of ../shared/realmodules/inputs.tar.zst,
// unpacked by Inputs into another temporary directory (never copied into
// the repository); then it locks the flake as a user's flake is locked.
// nixpkgs is testdata/realflakes/nixpkgs: the real nixpkgs lib with a
// nixosSystem that stands in for NixOS's own options (NixOS itself is too
// large to carry offline).
package realflaketest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

// DiskoVersions are the disko trees of the real modules: v1.12.0 and the
// commit the conformance corpus was measured on.
var DiskoVersions = []string{"disko", "disko-latest"}

// nixFlags are flake.Flags (not imported: flake's tests use this package).
var nixFlags = []string{
	"--extra-experimental-features", "nix-command flakes",
	"--option", "substituters", "",
	"--option", "build-users-group", "",
}

// Archive is where the real modules are: $NIXLOS_REALMODULES, or
// shared/realmodules/inputs.tar.zst beside the repository.
func Archive() string {
	if p := os.Getenv("NIXLOS_REALMODULES"); p != "" {
		return p
	}
	return filepath.Join(repoRoot(), "..", "shared", "realmodules", "inputs.tar.zst")
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Inputs unpacks the real modules into a temporary directory and returns
// it (nixpkgs-lib/, disko/, disko-latest/, sops-nix/). When nix, zstd or
// the archive is missing the test skips (fails in strict mode: testenv).
func Inputs(t testing.TB) string {
	t.Helper()
	testenv.Tools(t, "nix", "zstd", "tar")
	archive, err := filepath.Abs(Archive())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(archive); err != nil {
		testenv.Missing(t, "the real disko/sops-nix modules ("+archive+")", "set NIXLOS_REALMODULES to shared/realmodules/inputs.tar.zst")
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `zstd -dc "$1" | tar -xf - -C "$2"`, "sh", archive, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", archive, err, out)
	}
	return dir
}

// Fixture says how Flake assembles a fixture flake.
type Fixture struct {
	Name    string // directory under flake/testdata/realflakes
	Disko   string // disko tree: "disko" (v1.12.0, the default) or "disko-latest"
	Nixpkgs string // nixpkgs stand-in: "nixpkgs" (lib 25.05, the default) or "nixpkgs-2024-05"
}

// Flake copies the fixture into a temporary directory with its inputs
// pointed at the unpacked real modules (inputs, from Inputs), locks it,
// and returns the flake's directory.
func Flake(t testing.TB, inputs string, fx Fixture) string {
	t.Helper()
	if fx.Disko == "" {
		fx.Disko = "disko"
	}
	if fx.Nixpkgs == "" {
		fx.Nixpkgs = "nixpkgs"
	}
	dir := t.TempDir()
	urls := strings.NewReplacer(
		"github:nix-community/nixpkgs.lib", "path:"+filepath.Join(inputs, "nixpkgs-lib"),
		"github:NixOS/nixpkgs/nixos-25.05", "path:"+filepath.Join(dir, fx.Nixpkgs),
		"github:nix-community/disko", "path:"+filepath.Join(inputs, fx.Disko),
		"github:Mic92/sops-nix", "path:"+filepath.Join(inputs, "sops-nix"),
	)
	copyTree := func(name string, rewrite *strings.Replacer) {
		src := filepath.Join(repoRoot(), "flake", "testdata", "realflakes", name)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			dst := filepath.Join(dir, name, rel)
			if d.IsDir() {
				return os.MkdirAll(dst, 0o755)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if d.Name() == "flake.nix" {
				data = []byte(rewrite.Replace(string(data)))
			}
			return os.WriteFile(dst, data, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	copyTree("nixpkgs", urls)
	if fx.Nixpkgs != "nixpkgs" {
		copyTree(fx.Nixpkgs, strings.NewReplacer("github:NixOS/nixpkgs/nixos-25.05", "path:"+filepath.Join(dir, "nixpkgs")))
	}
	copyTree(fx.Name, urls)
	flakeDir := filepath.Join(dir, fx.Name)
	// A user's flake has its flake.lock; builtins.getFlake does not lock.
	args := append(append([]string{}, nixFlags...), "flake", "lock", "path:"+flakeDir)
	if out, err := exec.Command("nix", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix flake lock %s: %v\n%s", flakeDir, err, out)
	}
	return flakeDir
}
