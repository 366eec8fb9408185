package flake

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The realflakes fixtures (testdata/realflakes) are flakes in the usual
// layout (hosts/NAME/, nixos/modules, secrets/) whose hosts import the real
// disko and sops-nix NixOS modules. Their inputs are written as a user
// writes them (github:…); realFlake copies a fixture into a temporary
// directory and points the inputs at the source trees of
// ../shared/realmodules/inputs.tar.zst (unpacked there, never copied into
// the repository) as path: inputs. nixpkgs is testdata/realflakes/nixpkgs:
// the real nixpkgs lib with a nixosSystem that stands in for NixOS's own
// options (NixOS itself is too large to carry offline).

// realModulesArchive is where the real modules are: $NIXLOS_REALMODULES or
// the shared directory beside the repository.
func realModulesArchive() string {
	if p := os.Getenv("NIXLOS_REALMODULES"); p != "" {
		return p
	}
	return "../../shared/realmodules/inputs.tar.zst"
}

// realInputs unpacks the real modules into a temporary directory and
// returns it (nixpkgs-lib/, disko/, disko-latest/, sops-nix/).
func realInputs(t testing.TB) string {
	t.Helper()
	needNix(t)
	archive, err := filepath.Abs(realModulesArchive())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(archive); err != nil {
		t.Skipf("real disko/sops-nix modules not found (%v): set NIXLOS_REALMODULES to inputs.tar.zst", err)
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd not installed (apt-get install zstd): real-module tests skipped")
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `zstd -dc "$1" | tar -xf - -C "$2"`, "sh", archive, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", archive, err, out)
	}
	return dir
}

// fixture says how realFlake assembles a fixture flake.
type fixture struct {
	name    string // directory under testdata/realflakes
	disko   string // disko tree: "disko" (v1.12.0) or "disko-latest"
	nixpkgs string // nixpkgs stand-in: "nixpkgs" or "nixpkgs-2024-05"
}

// realFlake copies the fixture into a temporary directory with its inputs
// pointed at the unpacked real modules, and returns the flake's directory.
func realFlake(t testing.TB, inputs string, fx fixture) string {
	t.Helper()
	if fx.disko == "" {
		fx.disko = "disko"
	}
	if fx.nixpkgs == "" {
		fx.nixpkgs = "nixpkgs"
	}
	dir := t.TempDir()
	urls := strings.NewReplacer(
		"github:nix-community/nixpkgs.lib", "path:"+filepath.Join(inputs, "nixpkgs-lib"),
		"github:NixOS/nixpkgs/nixos-25.05", "path:"+filepath.Join(dir, fx.nixpkgs),
		"github:nix-community/disko", "path:"+filepath.Join(inputs, fx.disko),
		"github:Mic92/sops-nix", "path:"+filepath.Join(inputs, "sops-nix"),
	)
	copyTree := func(name string, rewrite *strings.Replacer) {
		src := filepath.Join("testdata", "realflakes", name)
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
	if fx.nixpkgs != "nixpkgs" {
		copyTree(fx.nixpkgs, strings.NewReplacer("github:NixOS/nixpkgs/nixos-25.05", "path:"+filepath.Join(dir, "nixpkgs")))
	}
	copyTree(fx.name, urls)
	flakeDir := filepath.Join(dir, fx.name)
	// A user's flake has its flake.lock; getFlake does not lock.
	if _, err := (Nix{}).Run(context.Background(), "flake", "lock", "path:"+flakeDir); err != nil {
		t.Fatal(err)
	}
	return flakeDir
}

// diskoVersions are the disko trees of ../shared/realmodules.
var diskoVersions = []string{"disko", "disko-latest"}

// realHosts are the hosts of the fixtures that evaluate.
var realHosts = map[string][]string{
	"workstation": {"btrfs", "crypt", "hybrid", "legacy"},
	"fleet":       {"laptop", "server"},
}

// diskoEvalJSON is disko's own evaluation of a host's devices, as JSON with
// functions and _-attributes dropped (nix eval --json of the devices fails
// on functions, so the same cleaning is applied in Nix).
func diskoEvalJSON(t testing.TB, dir, host string) any {
	t.Helper()
	out, err := Nix{}.Run(context.Background(), "eval", "--json",
		"path:"+dir+"#nixosConfigurations."+host+".config.disko.devices",
		"--apply", `let
		  keep = v: n: builtins.substring 0 1 n != "_" && !builtins.isFunction v.${n};
		  clean = v:
		    if builtins.isAttrs v then builtins.listToAttrs (map (n: { name = n; value = clean v.${n}; }) (builtins.filter (keep v) (builtins.attrNames v)))
		    else if builtins.isList v then map clean (builtins.filter (x: !builtins.isFunction x) v)
		    else v;
		in clean`)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRealFlakesManifest exports the fixtures' manifests and compares
// each host's disko with disko's own evaluation, for both disko versions;
// it checks system, key path (a host's own and the default) and sops file.
func TestRealFlakesManifest(t *testing.T) {
	inputs := realInputs(t)
	for _, dv := range diskoVersions {
		for _, name := range []string{"workstation", "fleet"} {
			t.Run(dv+"/"+name, func(t *testing.T) {
				dir := realFlake(t, inputs, fixture{name: name, disko: dv})
				_, m, err := Hosts(context.Background(), dir, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if got := m.HostNames(); !reflect.DeepEqual(got, realHosts[name]) {
					t.Fatalf("hosts %v, want %v (errors: %v)", got, realHosts[name], m.Errors)
				}
				for _, host := range m.HostNames() {
					h := m.Hosts[host]
					var got any
					if err := json.Unmarshal(h.Disko, &got); err != nil {
						t.Fatal(err)
					}
					if want := diskoEvalJSON(t, dir, host); !reflect.DeepEqual(got, want) {
						g, _ := json.Marshal(got)
						w, _ := json.Marshal(want)
						t.Errorf("%s: manifest disko differs from disko's evaluation:\n got %s\nwant %s", host, g, w)
					}
					key := DefaultAgeKeyFile
					if host == "crypt" {
						key = "/persist/sops/age.key"
					}
					if h.System != "x86_64-linux" || h.AgeKeyFile != key || h.SopsFile != "secrets/secrets.yaml" {
						t.Errorf("%s: system %q key %q sops %q", host, h.System, h.AgeKeyFile, h.SopsFile)
					}
				}
			})
		}
	}
}
