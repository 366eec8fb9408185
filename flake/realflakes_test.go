package flake

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/flake/realflaketest"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/partition"
)

// The fixtures and how they are assembled: see package realflaketest.

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
	inputs := realflaketest.Inputs(t)
	for _, dv := range realflaketest.DiskoVersions {
		for _, name := range []string{"workstation", "fleet"} {
			t.Run(dv+"/"+name, func(t *testing.T) {
				dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: name, Disko: dv})
				nix, runs := countingNix(t)
				hosts := []string(nil)
				if name == "fleet" {
					hosts = realHosts[name] // without its broken host
				}
				_, m, err := Hosts(context.Background(), dir, Options{Nix: nix, Hosts: hosts})
				if err != nil {
					t.Fatal(err)
				}
				if n := runs(); n != 1 {
					t.Errorf("%d nix runs with every host evaluating, want 1", n)
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

// createTools are the commands of disko's _create script that change a
// disk; the others (blkid, partprobe, udevadm, modprobe, echo, …) probe or
// wait. Probing subcommands of these tools are left out in createCommand.
var createTools = map[string]bool{
	"sgdisk": true, "parted": true, "mkswap": true, "cryptsetup": true, "pvcreate": true,
	"vgcreate": true, "lvcreate": true, "mdadm": true, "btrfs": true, "mount": true, "sfdisk": true,
}

// createCommands extracts the commands that change a disk from disko's
// _create script: logical lines (backslash continuations joined) are split
// into shell words and at ; | || &&, keywords (if, !, then, …) and
// redirections are dropped, and so are runtime values: words holding $ or
// a process substitution. Idempotence guards stay in the sense that a
// guarded command is still listed (disko runs it on an empty disk).
func createCommands(script string) [][]string {
	var out [][]string
	script = strings.ReplaceAll(script, "\\\n", " ")
	for _, line := range strings.Split(script, "\n") {
		for _, cmd := range shellCommands(line) {
			if c := createCommand(cmd); c != nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// createCommand keeps cmd if it changes a disk, without runtime values.
func createCommand(cmd []string) []string {
	for len(cmd) > 0 {
		switch cmd[0] {
		case "if", "!", "then", "elif", "else", "while", "until", "do", "(", "{":
			cmd = cmd[1:]
			continue
		}
		break
	}
	if len(cmd) == 0 {
		return nil
	}
	tool := cmd[0]
	if !createTools[tool] && !strings.HasPrefix(tool, "mkfs.") {
		return nil
	}
	var words []string
	for _, w := range cmd {
		if strings.ContainsAny(w, "$") || strings.HasPrefix(w, "<(") || strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") {
			continue
		}
		words = append(words, w)
	}
	sub := ""
	if len(words) > 1 {
		sub = words[1]
	}
	switch {
	case tool == "cryptsetup" && (sub == "isLuks" || sub == "status"),
		tool == "btrfs" && len(words) > 2 && words[1] == "subvolume" && words[2] == "show",
		tool == "mdadm" && (sub == "--detail" || sub == "--examine"):
		return nil
	}
	return words
}

// shellCommands splits one line into the words of its commands, at ; | ||
// && and the end of the line. Quotes are removed; $(…) and <(…) stay one
// word; a # outside quotes starts a comment.
func shellCommands(line string) [][]string {
	var cmds [][]string
	var cur []string
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			cur = append(cur, w.String())
			w.Reset()
			inWord = false
		}
	}
	end := func() {
		flush()
		if len(cur) > 0 {
			cmds = append(cmds, cur)
			cur = nil
		}
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\'':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				w.WriteRune(rs[j])
				j++
			}
			i = j
		case c == '"':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '"' {
				if rs[j] == '$' && j+1 < len(rs) && rs[j+1] == '(' {
					k := subst(rs, j)
					w.WriteString(string(rs[j:k]))
					j = k
					continue
				}
				if rs[j] == '\\' && j+1 < len(rs) {
					j++
				}
				w.WriteRune(rs[j])
				j++
			}
			i = j
		case (c == '$' || c == '<') && i+1 < len(rs) && rs[i+1] == '(':
			inWord = true
			k := subst(rs, i)
			w.WriteString(string(rs[i:k]))
			i = k - 1
		case c == '\\' && i+1 < len(rs):
			inWord = true
			i++
			w.WriteRune(rs[i])
		case c == ' ' || c == '\t':
			flush()
		case c == '&' && i > 0 && rs[i-1] == '>':
			w.WriteRune(c)
		case c == ';' || c == '|' || c == '&':
			end()
			if i+1 < len(rs) && (rs[i+1] == '|' || rs[i+1] == '&') {
				i++
			}
		case c == '#' && !inWord:
			end()
			return cmds
		default:
			inWord = true
			w.WriteRune(c)
		}
	}
	end()
	return cmds
}

// subst returns the index just after the $(…) or <(…) starting at i,
// counting nested parentheses outside quotes; len(rs) if it never closes.
func subst(rs []rune, i int) int {
	depth := 0
	var quote rune
	for j := i + 1; j < len(rs); j++ {
		switch c := rs[j]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth == 0 {
				return j + 1
			}
		}
	}
	return len(rs)
}

// coveredBy reports whether disko's command d is covered by the plan step
// argv p: same tool, and d's words (runtime values dropped from both) a
// subsequence of p's (a plan step may carry more, e.g. --attributes that
// disko v1.12.0 does not pass).
func coveredBy(d, p []string) bool {
	var pw []string
	for _, w := range p {
		if !strings.Contains(w, "$") {
			pw = append(pw, w)
		}
	}
	if len(d) == 0 || len(pw) == 0 || d[0] != pw[0] {
		return false
	}
	j := 0
	for _, w := range pw {
		if j < len(d) && w == d[j] {
			j++
		}
	}
	return j == len(d)
}

// mustCreate are commands each host's _create must hold (so that the
// extraction cannot pass by finding nothing), as quoted words.
var mustCreate = map[string][]string{
	"btrfs":  {`"mkfs.btrfs" "/dev/disk/by-partlabel/disk-main-root" "-f" "-L" "nixos"`, `"btrfs" "subvolume" "create"`, `"btrfs" "filesystem" "mkswapfile" "--size" "2G"`, `"mount" "/dev/disk/by-partlabel/disk-main-root" "-o" "subvol=/"`, `"mkfs.vfat"`},
	"legacy": {`"parted" "-s" "/dev/sda" "--" "mklabel" "msdos"`, `"parted" "-s" "/dev/sda" "--" "set" "1" "boot" "on"`, `"mkpart" "primary" "512M" "100%"`, `"mkfs.ext4" "/dev/sda2"`},
	"hybrid": {`"--typecode=1:EF02"`, `"--typecode=2:EF00"`, `"sgdisk" "-h" "2:EE" "/dev/vda"`, `"sfdisk" "--label-nested" "dos" "--part-type" "/dev/vda" "2" "0x0c"`, `"sfdisk" "--label-nested" "dos" "--activate" "/dev/vda" "2"`, `"mkfs.vfat" "/dev/disk/by-partlabel/disk-main-ESP"`},
	"crypt":  {`"cryptsetup" "-q" "luksFormat" "/dev/disk/by-partlabel/disk-main-luks" "--key-file"`, `"cryptsetup" "open"`, `"--allow-discards"`, `"pvcreate" "/dev/mapper/crypted"`, `"vgcreate" "pool"`, `"lvcreate" "--yes" "-l" "100%FREE" "-n" "root"`, `"mkswap" "/dev/pool/swap"`},
	"laptop": {`"mkswap" "/dev/disk/by-partlabel/disk-main-swap"`, `"mkfs.ext4"`},
	"server": {`"mdadm" "--create" "/dev/md/raid1" "--level=1"`, `"sgdisk" "--zap-all" "/dev/md/raid1"`, `"mkfs.ext4" "/dev/disk/by-id/md-name-any:raid1-part1"`},
}

// planFor plans a manifest host's layout as `installer plan --host H
// --disk KEY=16G…` does: disko.Load, virtual 16 GiB disks, NewPlan.
func planFor(t testing.TB, h Host) *partition.Plan {
	t.Helper()
	d, err := disko.Load(h.Disko)
	if err != nil {
		t.Fatalf("disko.Load: %v", err)
	}
	var args []string
	for _, disk := range h.Disks() {
		args = append(args, disk.Key+"=16G")
	}
	targets, err := partition.ParseDiskArgs(d, args)
	if err != nil {
		t.Fatal(err)
	}
	p, err := partition.NewPlan(d, targets, partition.Options{})
	if err != nil {
		t.Fatalf("partition.NewPlan: %v", err)
	}
	return p
}

// TestRealFlakesCreateInPlan checks, for both disko versions, that every
// command of disko's own _create script for each fixture host (runtime
// values and probes aside) is covered, in order, by a step of the plan
// nixlos makes from the manifest.
func TestRealFlakesCreateInPlan(t *testing.T) {
	inputs := realflaketest.Inputs(t)
	ctx := context.Background()
	for _, dv := range realflaketest.DiskoVersions {
		for _, name := range []string{"workstation", "fleet"} {
			t.Run(dv+"/"+name, func(t *testing.T) {
				dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: name, Disko: dv})
				_, m, err := Hosts(ctx, dir, Options{Hosts: realHosts[name]})
				if err != nil {
					t.Fatal(err)
				}
				for _, host := range realHosts[name] {
					script, err := Nix{}.Run(ctx, "eval", "--raw", "path:"+dir+"#nixosConfigurations."+host+".config.disko.devices._create")
					if err != nil {
						t.Fatal(err)
					}
					cmds := createCommands(string(script))
					if len(cmds) < 3 {
						t.Fatalf("%s: only %d commands found in disko's _create:\n%s", host, len(cmds), script)
					}
					joined := fmt.Sprintf("%q", cmds)
					for _, want := range mustCreate[host] {
						if !strings.Contains(joined, want) {
							t.Errorf("%s: disko's _create has no %s (extracted: %s)", host, want, joined)
						}
					}
					p := planFor(t, m.Hosts[host])
					at := 0
					for _, c := range cmds {
						found := -1
						for i := at; i < len(p.Steps); i++ {
							if coveredBy(c, p.Steps[i].Argv) {
								found = i
								break
							}
						}
						if found < 0 {
							var steps []string
							for i, s := range p.Steps {
								steps = append(steps, fmt.Sprintf("%d %q", i, s.Argv))
							}
							t.Errorf("%s: disko's %q is not in the plan's steps from %d on:\n%s", host, c, at, strings.Join(steps, "\n"))
							break
						}
						at = found
					}
				}
			})
		}
	}
}

// countingNix is a Nix whose binary is a wrapper that counts its runs in
// the returned file (one line per run).
func countingNix(t testing.TB) (Nix, func() int) {
	t.Helper()
	needNix(t)
	real, err := exec.LookPath("nix")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	script := "#!/bin/sh\necho run >>" + log + "\nexec " + real + " \"$@\"\n"
	bin := filepath.Join(dir, "nix")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return Nix{Path: bin}, func() int {
		data, _ := os.ReadFile(log)
		return strings.Count(string(data), "run\n")
	}
}

// TestRealFlakesBrokenHost: one host whose disko layout has a content
// type "mdadm" (it is "mdraid") among good ones. Every host is listed, the
// broken one with its option path, its file and the fix; the good ones
// evaluate, selecting them works, and selecting only good hosts (mkiso
// build --host laptop) evaluates them alone, in one nix process.
func TestRealFlakesBrokenHost(t *testing.T) {
	inputs := realflaketest.Inputs(t)
	ctx := context.Background()
	for _, dv := range realflaketest.DiskoVersions {
		t.Run(dv, func(t *testing.T) {
			dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: "fleet", Disko: dv})
			nix, runs := countingNix(t)
			_, m, err := Hosts(ctx, dir, Options{Nix: nix})
			if err != nil {
				t.Fatalf("one broken host failed the flake: %v", err)
			}
			if n := runs(); n != 2 {
				t.Errorf("%d nix runs for one broken host, want 2 (all, then all but it)", n)
			}
			if got := m.HostNames(); !reflect.DeepEqual(got, []string{"laptop", "server"}) {
				t.Errorf("good hosts %v", got)
			}
			if got := m.AllHostNames(); !reflect.DeepEqual(got, []string{"broken", "laptop", "server"}) {
				t.Errorf("all hosts %v", got)
			}
			e := m.Errors["broken"]
			if e == nil {
				t.Fatalf("no error for host broken: %+v", m.Errors)
			}
			if e.Option != "disko.devices.disk.disk1.content.partitions.mdadm.content" {
				t.Errorf("option %q", e.Option)
			}
			if e.File != "hosts/broken/disko.nix:13" {
				t.Errorf("file %q, want hosts/broken/disko.nix:13", e.File)
			}
			for _, want := range []string{`"mdadm" is not a disko type`, `type = "mdraid"`, "hosts/broken/disko.nix:13", e.Option} {
				if !strings.Contains(e.Fix, want) {
					t.Errorf("fix lacks %q: %s", want, e.Fix)
				}
			}
			if !strings.Contains(e.Message, "attribute 'mdadm' missing") || strings.Contains(e.Fix+e.Message, "examples/") {
				t.Errorf("message: %s", e.Message)
			}
			_, err = m.Select("broken")
			if errs.Code(err) != 2 || !strings.Contains(err.Error(), "host broken") || !strings.Contains(err.Error(), "mdraid") {
				t.Errorf("Select(broken) = %v", err)
			}
			for _, good := range []string{"laptop", "server"} {
				if h, err := m.Select(good); err != nil || !h.HasLayout() {
					t.Errorf("Select(%s) = %v", good, err)
				}
			}

			nix, runs = countingNix(t)
			_, m, err = Hosts(ctx, dir, Options{Nix: nix, Hosts: []string{"laptop", "server"}})
			if err != nil || len(m.Errors) != 0 || !reflect.DeepEqual(m.HostNames(), []string{"laptop", "server"}) {
				t.Fatalf("selected good hosts: %v %+v", err, m)
			}
			if n := runs(); n != 1 {
				t.Errorf("%d nix runs for good hosts, want 1", n)
			}
			_, _, err = Hosts(ctx, dir, Options{Hosts: []string{"nope"}})
			if errs.Code(err) != 2 || !strings.Contains(err.Error(), "broken, laptop, server") {
				t.Errorf("unknown selected host: %v", err)
			}
		})
	}
}

// TestRealFlakesOptionErrors: an option that errors is that host's error,
// never replaced by a default (the key path, the platform).
func TestRealFlakesOptionErrors(t *testing.T) {
	inputs := realflaketest.Inputs(t)
	dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: "mistakes"})
	nix, runs := countingNix(t)
	_, m, err := Hosts(context.Background(), dir, Options{Nix: nix})
	if err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 4 {
		t.Errorf("%d nix runs for three broken hosts, want 4", n)
	}
	if got := m.HostNames(); !reflect.DeepEqual(got, []string{"ok"}) {
		t.Errorf("good hosts %v (errors %v)", got, m.Errors)
	}
	for _, tc := range []struct {
		host, option, file string
		fix                []string
	}{
		{"keytype", "sops.age.keyFile", "hosts/keytype/", []string{"sops.age.keyFile", "an integer", "hosts/keytype/"}},
		{"conflict", "sops.age.keyFile", "hosts/conflict/keys.nix", []string{"sops.age.keyFile", "hosts/conflict/keys.nix and hosts/conflict/default.nix", "lib.mkForce"}},
		{"platform", "nixpkgs.hostPlatform", "hosts/platform/default.nix", []string{"nixpkgs.hostPlatform", "hosts/platform/default.nix"}},
	} {
		e := m.Errors[tc.host]
		if e == nil {
			t.Errorf("%s: no error (host %+v)", tc.host, m.Hosts[tc.host])
			continue
		}
		if e.Option != tc.option || e.File != tc.file && !(tc.file == "hosts/keytype/" && e.File == "") {
			t.Errorf("%s: option %q file %q, want %q %q", tc.host, e.Option, e.File, tc.option, tc.file)
		}
		for _, want := range tc.fix {
			if !strings.Contains(e.Fix, want) {
				t.Errorf("%s: fix lacks %q: %s", tc.host, want, e.Fix)
			}
		}
	}
}

// TestRealFlakesOldNixpkgs evaluates the workstation with a nixpkgs whose
// lib predates 2024-06 (no lib.match, no lib.toShellVars): disko fails for
// real, and each host's fix names the nixpkgs disko needs.
func TestRealFlakesOldNixpkgs(t *testing.T) {
	inputs := realflaketest.Inputs(t)
	for _, dv := range realflaketest.DiskoVersions {
		t.Run(dv, func(t *testing.T) {
			dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: "workstation", Disko: dv, Nixpkgs: "nixpkgs-2024-05"})
			// Two hosts are enough (a failing run costs ~0.5 s of trace).
			_, m, err := Hosts(context.Background(), dir, Options{Hosts: []string{"crypt", "legacy"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Hosts) != 0 || len(m.Errors) != 2 {
				t.Fatalf("hosts %v errors %v", m.HostNames(), m.Broken())
			}
			for name, e := range m.Errors {
				if !strings.Contains(e.Message, "attribute 'match' missing") && !strings.Contains(e.Message, "attribute 'toShellVars' missing") {
					t.Errorf("%s: message %s", name, e.Message)
				}
				for _, want := range []string{"older than 2024-06", "nixpkgs lib 24.11 or newer", "nixos-24.11", "flake.nix"} {
					if !strings.Contains(e.Fix, want) {
						t.Errorf("%s: fix lacks %q: %s", name, want, e.Fix)
					}
				}
			}
		})
	}
}

// BenchmarkRealFlakesExport measures Export on the fixtures (real disko
// and sops-nix modules): all hosts good (one nix run), one broken host
// among three (two runs), only the good hosts selected (one run), next to
// the bare nix eval of every host's cleaned disko.devices.
func BenchmarkRealFlakesExport(b *testing.B) {
	inputs := realflaketest.Inputs(b)
	ctx := context.Background()
	work := realflaketest.Flake(b, inputs, realflaketest.Fixture{Name: "workstation"})
	fleet := realflaketest.Flake(b, inputs, realflaketest.Fixture{Name: "fleet"})
	mistakes := realflaketest.Flake(b, inputs, realflaketest.Fixture{Name: "mistakes"})
	export := func(b *testing.B, dir string, hosts []string, broken int) {
		f, err := Find(dir)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			m, err := Export(ctx, f, Options{Hosts: hosts})
			if err != nil || len(m.Errors) != broken {
				b.Fatalf("%v %v", err, m.Broken())
			}
		}
	}
	b.Run("workstation-4-good", func(b *testing.B) { export(b, work, nil, 0) })
	b.Run("fleet-1-broken-of-3", func(b *testing.B) { export(b, fleet, nil, 1) })
	b.Run("fleet-2-good-selected", func(b *testing.B) { export(b, fleet, []string{"laptop", "server"}, 0) })
	b.Run("mistakes-3-broken-of-4", func(b *testing.B) { export(b, mistakes, nil, 3) })
	b.Run("fleet-per-host-fallback", func(b *testing.B) {
		// The path taken when a failure names no host: list, then each
		// host alone (2 at a time).
		f, _ := Find(fleet)
		for b.Loop() {
			r, failures, err := evalEach(ctx, f, Options{}, nil, []string{}, map[string]*HostError{}, nil)
			if err != nil || len(failures) != 1 || len(r.Hosts) != 2 {
				b.Fatalf("%v %v", err, failures)
			}
		}
	})
	b.Run("workstation-bare-nix-eval", func(b *testing.B) {
		for b.Loop() {
			if _, err := (Nix{}).Run(ctx, "eval", "--json", "path:"+work+"#nixosConfigurations", "--apply",
				`c: builtins.mapAttrs (n: h: builtins.attrNames h.config.disko.devices.disk.main.content) c`); err != nil {
				b.Fatal(err)
			}
		}
	})
}
