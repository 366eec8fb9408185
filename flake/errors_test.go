package flake

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

// TestParseNixError reads recorded Nix 2.8 failures of evalExpr (real
// disko/sops-nix modules, --show-trace; testdata/nixerrors): the host
// comes from evalExpr's error context, the option from the message or the
// innermost option of the trace, the message stops before the trace.
func TestParseNixError(t *testing.T) {
	for _, tc := range []struct {
		file, host, option, first string
	}{
		{"mdadm-content-type", "broken", "disko.devices.disk.disk1.content.partitions.mdadm.content", "error: attribute 'mdadm' missing"},
		{"conflicting-definitions", "conflict", "sops.age.keyFile", "error: The option `sops.age.keyFile' has conflicting definition values:"},
		{"not-of-type", "platform", "nixpkgs.hostPlatform", "error: A definition for option `nixpkgs.hostPlatform' is not of type"},
		{"cannot-coerce", "keytype", "sops.age.keyFile", "error: cannot coerce an integer to a string"},
		{"lib-match-missing", "crypt", "disko.devices.disk.main.content.partitions.ESP.device", "error: attribute 'match' missing"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "nixerrors", tc.file+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			d := parseNixError(string(data))
			if d.Host != tc.host || d.Option != tc.option || !strings.HasPrefix(d.Message, tc.first) {
				t.Errorf("got host %q option %q message %q", d.Host, d.Option, d.Message)
			}
			if strings.Contains(d.Message, "…") || strings.Contains(d.Message, "--show-trace") {
				t.Errorf("message holds the trace: %s", d.Message)
			}
		})
	}
	for _, tc := range []struct{ name, in, host, option string }{
		{"empty", "", "", ""},
		{"no trace", "error: boom\n(use '--show-trace' to show detailed location information)", "", ""},
		{"own type check", "error: nixlos: option sops.age.keyFile: a set, not a string or path\n       … nixlos: host \"a b\"", "a b", "sops.age.keyFile"},
		{"marker in the message is not the host", "error: … nixlos: host \"x\"", "", ""},
		{"innermost host wins", "error: x\n       … nixlos: host \"in\"\n       … nixlos: host \"out\"", "in", ""},
		{"option outside the host is not the host's", "error: x\n       … nixlos: host \"h\"\n       … while evaluating the option `a.b':", "h", ""},
		{"bad marker", "error: x\n       … nixlos: host nope", "", ""},
		{"newer Nix: trace first, outermost first", "error:\n       … while evaluating the attribute 'hosts'\n\n       … nixlos: host \"broken\"\n\n       … while evaluating the option `disko.devices.disk.main.content':\n\n       … while evaluating the option `disko.devices.disk.main.content.partitions.x.content':\n\n       (stack trace truncated; use '--show-trace' to show the full, detailed trace)\n\n       error: attribute 'mdadm' missing\n       at /nix/store/x-source/lib/default.nix:29:13:",
			"broken", "disko.devices.disk.main.content.partitions.x.content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := parseNixError(tc.in)
			if strings.Contains(tc.name, "newer Nix") && !strings.HasPrefix(d.Message, "error: attribute 'mdadm' missing\n       at ") {
				t.Errorf("message %q", d.Message)
			}
			if d.Host != tc.host || d.Option != tc.option {
				t.Errorf("got host %q option %q, want %q %q", d.Host, d.Option, tc.host, tc.option)
			}
		})
	}
}

// TestErrorTexts maps recorded and known Nix messages to their fixes:
// every entry of errorTexts is hit, and no fix points into this repository.
func TestErrorTexts(t *testing.T) {
	vars := map[string]string{"option": "a.b", "file": "hosts/h/default.nix", "files": "x.nix and y.nix", "host": "h", "flake": "flake.nix"}
	hit := map[string]bool{}
	for _, tc := range []struct {
		msg  string
		git  bool
		rule string
		want []string
	}{
		{"error: anonymous function at /nix/store/x-source/lib/types.nix:1:1 called with unexpected argument 'nestedTypes'", false, "nixpkgs before 2022-08",
			[]string{"older than 2022-08", "nixpkgs lib 24.11 or newer", "nixos-24.11", "flake.nix", "inputs.disko.inputs.nixpkgs.follows"}},
		{"error: attribute 'toShellVars' missing\n at /nix/store/x-source/lib/default.nix:383:7:", false, "nixpkgs before 2024-06 (toShellVars)",
			[]string{"older than 2024-06", "toShellVars", "nixos-24.11"}},
		{"error: attribute 'match' missing", false, "nixpkgs before 2024-06 (match)", []string{"older than 2024-06", "nixpkgs lib 24.11"}},
		{"error: attribute 'mdadm' missing\n 29|  types.${x.type}.check x", false, "unknown disko type", []string{`"mdadm" is not a disko type`, "a.b", "hosts/h/default.nix", `type = "mdraid"`}},
		{"error: nixlos: option sops.age.keyFile: a set, not a string or path", false, "own type check", []string{"a.b", "a set", "hosts/h/default.nix"}},
		{"error: A definition for option `a.b' is not of type `string'.", false, "option type", []string{"give a.b a value", "hosts/h/default.nix"}},
		{"error: The option `a.b' has conflicting definition values:", false, "conflicting definitions", []string{"x.nix and y.nix", "lib.mkForce"}},
		{"error: The option `a.b' is used but not defined.", false, "used but not defined", []string{"set a.b for host h"}},
		{"error: The option `a.c' does not exist. Definition values:", false, "no such option", []string{"a.b is not an option", "disko.nixosModules.disko", "sops-nix.nixosModules.sops"}},
		{"error: cannot coerce an integer to a string", false, "value of the wrong type", []string{"a.b holds an integer"}},
		{"error: infinite recursion encountered", false, "infinite recursion", []string{"depends on itself"}},
		{"error: flake 'path:/x' requires lock file changes but they're not allowed due to '--no-update-lock-file'", false, "lock file out of date", []string{"nix flake lock"}},
		{"error: getting status of '/nix/store/x-source/hosts/new': No such file or directory", true, "untracked file", []string{"git add"}},
		{"error: getting status of '/nix/store/x-source/hosts/new': No such file or directory", false, "", nil},
		{"error: something nobody has seen", false, "", nil},
	} {
		fix, ok := fixFor(tc.msg, tc.git, vars)
		rule := ""
		for _, e := range errorTexts {
			if ok && fix == expand(e, tc.msg, vars) {
				rule = e.Name
				break
			}
		}
		if rule != tc.rule {
			t.Errorf("%q (git %v): rule %q, want %q (fix %q)", tc.msg, tc.git, rule, tc.rule, fix)
		}
		hit[rule] = true
		for _, w := range tc.want {
			if !strings.Contains(fix, w) {
				t.Errorf("%q: fix lacks %q: %s", tc.msg, w, fix)
			}
		}
		if strings.Contains(fix, "examples/") || strings.Contains(fix, "{") && !strings.Contains(fix, "${") {
			t.Errorf("%q: fix points into nixlos or has an unfilled field: %s", tc.msg, fix)
		}
	}
	for _, e := range errorTexts {
		if !hit[e.Name] {
			t.Errorf("errorTexts entry %q has no test case", e.Name)
		}
	}
}

// expand is fixFor for one entry (to tell which entry matched).
func expand(e errorText, msg string, vars map[string]string) string {
	saved := errorTexts
	defer func() { errorTexts = saved }()
	errorTexts = []errorText{e}
	fix, _ := fixFor(msg, true, vars)
	return fix
}

// TestUserPaths maps the flake's store path in a message to the user's
// files, and leaves other store paths alone.
func TestUserPaths(t *testing.T) {
	needNix(t)
	dir := writeFlake(t, `{ outputs = { self }: { }; }`)
	os.MkdirAll(filepath.Join(dir, "hosts", "a"), 0o755)
	os.WriteFile(filepath.Join(dir, "hosts", "a", "default.nix"), []byte("{ }\n"), 0o644)
	f, err := Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Nix{}.Run(context.Background(), "flake", "metadata", "--json", f.Ref())
	if err != nil {
		t.Fatal(err)
	}
	var meta struct{ Path string }
	if err := json.Unmarshal(out, &meta); err != nil || !strings.HasPrefix(meta.Path, "/nix/store/") {
		t.Fatalf("flake metadata: %s %v", out, err)
	}
	other := "/nix/store/hn0yisb1xpf0cf89i1av3qk7i59fkxk2-source"
	msg := "error: x\n       at " + meta.Path + "/hosts/a/default.nix:3:5:\n       at " + other + "/lib/default.nix:29:13:\n       - In `" + meta.Path + "/hosts/a': 1"
	got, files := userPaths(f, msg)
	want := "error: x\n       at " + dir + "/hosts/a/default.nix:3:5:\n       at " + other + "/lib/default.nix:29:13:\n       - In `" + dir + "/hosts/a': 1"
	if got != want {
		t.Errorf("message:\n got %s\nwant %s", got, want)
	}
	if strings.Join(files, ",") != "hosts/a/default.nix:3,hosts/a/default.nix" {
		t.Errorf("files %q", files)
	}
	if m := regexp.MustCompile(`/nix/store/`).FindAllString(got, -1); len(m) != 1 {
		t.Errorf("store paths left: %d", len(m))
	}
}

// TestUntrackedHostFile: in a git flake, a host whose module is not
// git-added fails alone, with the git add fix naming its directory.
func TestUntrackedHostFile(t *testing.T) {
	needNix(t)
	testenv.Tools(t, "git")
	dir := writeFlake(t, `{ outputs = { self }: { nixosConfigurations = {
	  a = `+hostWithLayout+`;
	  b = { config = import ./hosts/b; };
	}; }; }`)
	os.MkdirAll(filepath.Join(dir, "hosts", "b"), 0o755)
	os.WriteFile(filepath.Join(dir, "hosts", "b", "default.nix"), []byte(`{ nixpkgs.hostPlatform = "x86_64-linux"; }`), 0o644)
	gitRun(t, dir, "init", "-q")
	gitRun(t, dir, "add", "flake.nix")
	_, m, err := Hosts(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := m.Errors["b"]
	if e == nil || len(m.Hosts) != 1 || !m.Hosts["a"].HasLayout() {
		t.Fatalf("hosts %v errors %v", m.HostNames(), m.Broken())
	}
	t.Logf("%s\nfix: %s", e.Message, e.Fix)
	if !strings.Contains(e.Fix, "git add") || !strings.Contains(e.Fix, "hosts/b/") || strings.Contains(e.Message, "/nix/store/") && strings.Contains(e.Message, "-source/hosts/b") {
		t.Errorf("error %+v", e)
	}
}
