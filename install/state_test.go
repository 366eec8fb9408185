package install

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
)

const testSystem = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-h-1"

func testState(hash string, done ...string) *State {
	return &State{Version: 1, PlanHash: hash, Host: "h", Completed: done}
}

// TestStateRoundTrip: the state file is written atomically with mode
// 0600 in a 0700 directory, leaves no temporary file, and reads back equal.
func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mnt", StateFile)
	want := testState("sha256:"+strings.Repeat("ab", 32), StepVerifyKey, StepPartition, StepCopy)
	want.System = testSystem
	if err := writeStateFile(path, want); err != nil {
		t.Fatal(err)
	}
	// a second write replaces the first
	want.Completed = append(want.Completed, StepProfile)
	if err := writeStateFile(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := readStateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back %+v, want %+v", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v (%v), want 0700", di.Mode(), err)
	}
	if di, err := os.Stat(filepath.Join(dir, "mnt/var/lib")); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("/var/lib mode %v (%v), want 0755", di.Mode(), err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("state directory holds %d entries, want only the state file", len(ents))
	}
	if st, err := readStateFile(filepath.Join(dir, "none.json")); st != nil || err != nil {
		t.Errorf("missing state: %v %v, want nil nil", st, err)
	}
}

func TestParseState(t *testing.T) {
	hash := `"sha256:` + strings.Repeat("0f", 32) + `"`
	for _, tc := range []struct {
		name, json, err string
	}{
		{"ok", `{"version":1,"planHash":` + hash + `,"host":"h","completed":["verify-key","partition"]}`, ""},
		{"ok with system", `{"version":1,"planHash":` + hash + `,"host":"h","completed":["copy-closure"],"system":"` + testSystem + `"}`, ""},
		{"version 2", `{"version":2,"planHash":` + hash + `,"host":"h","completed":[]}`, "version 2"},
		{"short hash", `{"version":1,"planHash":"sha256:abc","host":"h","completed":[]}`, "plan hash"},
		{"upper hash", `{"version":1,"planHash":"sha256:` + strings.Repeat("AB", 32) + `","host":"h","completed":[]}`, "plan hash"},
		{"unknown step", `{"version":1,"planHash":` + hash + `,"host":"h","completed":["format-everything"]}`, "unknown step"},
		{"step twice", `{"version":1,"planHash":` + hash + `,"host":"h","completed":["mount","mount"]}`, "twice"},
		{"unknown field", `{"version":1,"planHash":` + hash + `,"host":"h","completed":[],"x":1}`, "unknown field"},
		{"bad system", `{"version":1,"planHash":` + hash + `,"host":"h","completed":[],"system":"/tmp/x"}`, "store path"},
		{"trailing data", `{"version":1,"planHash":` + hash + `,"host":"h","completed":[]} {}`, "after the JSON"},
		{"truncated", `{"version":1,"planHash":` + hash, "install state"},
		{"empty", ``, "install state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseState([]byte(tc.json))
			if tc.err == "" {
				if err != nil || st == nil {
					t.Fatalf("ParseState: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// FuzzParseState: the parser never panics, and what it accepts survives
// a write and a read unchanged.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"planHash":"sha256:` + strings.Repeat("0f", 32) + `","host":"h","completed":["verify-key","partition"],"system":"` + testSystem + `"}`))
	f.Add([]byte(`{"version":1,"planHash":"sha256:","completed":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseState(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if !reflect.DeepEqual(st, again) {
			t.Fatalf("round trip changed the state: %+v → %+v", st, again)
		}
	})
}

// TestResumeActions: which steps a resume skips, reopens or runs.
func TestResumeActions(t *testing.T) {
	copySteps := []string{StepVerifyKey, StepLUKSKeys, StepPartition, StepMount, StepCopyFlake, StepInstallKey, StepCopy,
		StepProfile, StepActivate, StepBootloader, StepBootCheck, StepWriteLog, StepUnmount}
	const R, S, O = actRun, actSkip, actReopen
	for _, tc := range []struct {
		name  string
		steps []string
		done  []string
		want  []string
	}{
		{"after partition", copySteps, []string{StepVerifyKey, StepLUKSKeys, StepPartition},
			[]string{R, R, O, R, R, R, R, R, R, R, R, R, R}},
		{"after install-key", copySteps, []string{StepVerifyKey, StepLUKSKeys, StepPartition, StepMount, StepCopyFlake, StepInstallKey},
			[]string{R, R, O, R, S, S, R, R, R, R, R, R, R}},
		{"during bootloader", copySteps, []string{StepVerifyKey, StepLUKSKeys, StepPartition, StepMount, StepCopyFlake, StepInstallKey, StepCopy, StepProfile, StepActivate},
			[]string{R, R, O, R, S, S, S, S, S, R, R, R, R}},
		{"after bootloader", copySteps, []string{StepVerifyKey, StepLUKSKeys, StepPartition, StepMount, StepCopyFlake, StepInstallKey, StepCopy, StepProfile, StepActivate, StepBootloader},
			[]string{R, R, O, R, S, S, S, S, S, S, R, R, R}},
		{"build instead of copy, no luks", []string{StepVerifyKey, StepPartition, StepMount, StepCopyFlake, StepInstallKey, StepBuild, StepProfile},
			[]string{StepPartition, StepMount, StepCopyFlake, StepInstallKey, StepBuild},
			[]string{R, O, R, S, S, S, R}},
		{"a gap: everything up to the last completed is skipped", copySteps, []string{StepPartition, StepCopy},
			[]string{R, R, O, R, S, S, S, R, R, R, R, R, R}},
		{"nothing done", copySteps, nil,
			[]string{R, R, R, R, R, R, R, R, R, R, R, R, R}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resumeActions(tc.steps, testState("", tc.done...))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("actions\n got %v\nwant %v\nsteps %v", got, tc.want, tc.steps)
			}
		})
	}
}

// TestResumeDecision: same plan → resume; another plan's state, a state
// from before partitioning, no state, or --restart → start over.
func TestResumeDecision(t *testing.T) {
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	plan := func() *Plan {
		p, err := NewPlan(f.opt())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := plan()
	if !validHash(p.Hash) {
		t.Fatalf("plan hash %q", p.Hash)
	}
	if again := plan(); again.Hash != p.Hash {
		t.Errorf("the same inputs give hashes %s and %s", p.Hash, again.Hash)
	}
	// Where a LUKS key comes from does not change the plan.
	os.MkdirAll(filepath.Dir(f.keyFile), 0o700)
	os.WriteFile(f.keyFile, []byte("x"), 0o600)
	if q := plan(); q.LUKSKeys[0].Source != KeyExisting || q.Hash != p.Hash {
		t.Errorf("key source %s changed the hash: %s → %s", q.LUKSKeys[0].Source, p.Hash, q.Hash)
	}
	os.Remove(f.keyFile)
	// Another disk is another plan.
	o := f.opt()
	other := filepath.Join(f.dir, "other.img")
	os.WriteFile(other, nil, 0o644)
	os.Truncate(other, 8<<30)
	o.Disks = []string{"main=" + other}
	q, err := NewPlan(o)
	if err != nil {
		t.Fatal(err)
	}
	if q.Hash == p.Hash {
		t.Error("a plan on another disk has the same hash")
	}

	done := []string{StepVerifyKey, StepLUKSKeys, StepPartition, StepMount, StepCopyFlake}
	for _, tc := range []struct {
		name    string
		st      *State
		restart bool
		resume  bool
		line    string
	}{
		{"same plan", testState(p.Hash, done...), false, true, "resume: continuing after step copy-flake"},
		{"other plan", testState(q.Hash, done...), false, false, "another plan"},
		{"before partition completed", testState(p.Hash, StepVerifyKey, StepLUKSKeys), false, false, "not finished partitioning"},
		{"no state", nil, false, false, "resume: none (nothing here)"},
		{"restart", testState(p.Hash, done...), true, false, "--restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plan()
			line := p.decideResume(tc.st, "nothing here", nil, tc.restart)
			if !strings.Contains(line, tc.line) {
				t.Errorf("line %q, want it to contain %q", line, tc.line)
			}
			if got := p.Resume != nil; got != tc.resume {
				t.Fatalf("resume %v, want %v", got, tc.resume)
			}
			var skipped []string
			for _, s := range p.Steps {
				if s.Skip != "" {
					skipped = append(skipped, s.Name)
				}
			}
			want := []string(nil)
			if tc.resume {
				want = []string{StepCopyFlake}
			}
			if !reflect.DeepEqual(skipped, want) {
				t.Errorf("skipped steps %v, want %v", skipped, want)
			}
			if p.Hash != plan().Hash {
				t.Error("the resume decision changed the plan's hash")
			}
		})
	}
}

func TestStatePlace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mounts []*partition.MountPlan
		mp     string
		path   string
	}{
		{"root", []*partition.MountPlan{{Mountpoint: "/", Device: "/dev/pool/root"}, {Mountpoint: "/boot", Device: "/dev/vda1"}}, "/", StateFile},
		{"separate /var", []*partition.MountPlan{{Mountpoint: "/", Device: "/dev/vda2"}, {Mountpoint: "/var", Device: "/dev/vda3"}, {Mountpoint: "/variable", Device: "/dev/vda4"}}, "/var", StateFile},
		{"tmpfs root", []*partition.MountPlan{{Mountpoint: "/", Device: "none"}, {Mountpoint: "/nix", Device: "/dev/vda2"}}, "/nix", stateFallback},
		{"nothing on a disk", []*partition.MountPlan{{Mountpoint: "/", Device: "none"}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, path, ok := statePlace(&partition.Plan{Mounts: tc.mounts})
			if tc.mp == "" {
				if ok {
					t.Fatalf("state place %v %s, want none", m, path)
				}
				return
			}
			if !ok || m.Mountpoint != tc.mp || path != tc.path {
				t.Errorf("state place %v %s %v, want %s %s", m, path, ok, tc.mp, tc.path)
			}
		})
	}
}

// TestWipeBootCode: only the first 440 bytes of the MBR are zeroed; the
// disk signature, the partition entries and the rest stay.
func TestWipeBootCode(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	data := bytes.Repeat([]byte{0xEB, 0x63, 0x90, 0x11}, 1024)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := wipeBootCode(&Plan{Disks: map[string]string{"main": img}}, &log); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(img)
	if !allZero(got[:440]) || !bytes.Equal(got[440:], data[440:]) {
		t.Errorf("after the wipe: boot code zero %v, rest unchanged %v", allZero(got[:440]), bytes.Equal(got[440:], data[440:]))
	}
	if !strings.Contains(log.String(), "MBR boot code of "+img+" wiped") {
		t.Errorf("log %q", log.String())
	}
}

// TestDisarm: the ESP's fallback loader, loader.conf and entries and
// GRUB's grub.cfg go; the kernels, other files and other filesystems stay.
func TestDisarm(t *testing.T) {
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	p, err := NewPlan(f.opt())
	if err != nil {
		t.Fatal(err)
	}
	root := p.Root
	// efi/boot in lower case, as some firmware writes it (FAT has no case)
	gone := []string{"boot/efi/boot/BOOTX64.EFI", "boot/loader/loader.conf", "boot/loader/entries/nixos-generation-1.conf", "boot/grub/grub.cfg"}
	kept := []string{"boot/efi/nixos/kernel.efi", "boot/efi/systemd/systemd-bootx64.efi", "home/alice/data", "boot/loader/random-seed"}
	for _, rel := range append(append([]string{}, gone...), kept...) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(rel)), 0o755)
		if err := os.WriteFile(filepath.Join(root, rel), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	r := &runner{p: p, log: &redactor{w: &log}}
	if err := r.disarm(); err != nil {
		t.Fatal(err)
	}
	for _, rel := range gone {
		if fileExists(filepath.Join(root, rel)) {
			t.Errorf("%s is still there", rel)
		}
	}
	for _, rel := range kept {
		if !fileExists(filepath.Join(root, rel)) {
			t.Errorf("%s was removed", rel)
		}
	}
}

func TestEchoLines(t *testing.T) {
	var log, console bytes.Buffer
	e := &echoLines{w: &log, console: &console, prefix: "nixlos: ", as: "  partition: ", skip: "(continuing", redact: func(s string) string { return strings.ReplaceAll(s, "secret", "[redacted]") }}
	in := "mke2fs 1.47\nnixlos: modprobe -a x: exit status 1 (continuing: built in)\nnixlos: mkfs /dev/pool/root ext4\nnixlos: luksFormat /dev/vda2 sec"
	e.Write([]byte(in))
	e.Write([]byte("ret\nWriting superblocks\n"))
	if log.String() != in+"ret\nWriting superblocks\n" {
		t.Errorf("log %q", log.String())
	}
	if want := "  partition: mkfs /dev/pool/root ext4\n  partition: luksFormat /dev/vda2 [redacted]\n"; console.String() != want {
		t.Errorf("console %q, want %q", console.String(), want)
	}
}

// TestFailureDisarms: a failure after the boot loader step started and
// before the boot check passed removes the ways in and drops the boot
// loader step from the state; one after the boot check leaves both.
func TestFailureDisarms(t *testing.T) {
	onFS(t, tmpfsMagic)
	for _, tc := range []struct {
		name      string
		done      []string
		bootWrite bool
		disarm    bool
		completed []string
	}{
		{"boot loader failed", []string{StepPartition, StepActivate}, true, true, []string{StepPartition, StepActivate}},
		{"boot check failed", []string{StepPartition, StepActivate, StepBootloader}, true, true, []string{StepPartition, StepActivate}},
		{"boot check failed on a resume", []string{StepPartition, StepActivate, StepBootloader}, false, true, []string{StepPartition, StepActivate}},
		{"copy failed", []string{StepPartition}, false, false, []string{StepPartition}},
		{"write-log failed", []string{StepPartition, StepBootloader, StepBootCheck}, true, false, []string{StepPartition, StepBootloader, StepBootCheck}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, true)
			p, err := NewPlan(f.opt())
			if err != nil {
				t.Fatal(err)
			}
			entry := filepath.Join(p.Root, "boot/loader/entries/nixos-generation-1.conf")
			os.MkdirAll(filepath.Dir(entry), 0o755)
			os.WriteFile(entry, []byte("linux /x"), 0o644)
			var log, console bytes.Buffer
			r := &runner{p: p, log: &redactor{w: &log}, out: &console, mounted: true, bootWrite: tc.bootWrite,
				sess: &apply.Session{Plan: p.Layout, Root: p.Root}}
			r.initState()
			r.state.Completed = tc.done
			r.cleanup()
			if fileExists(entry) == tc.disarm {
				t.Errorf("boot entry there: %v, want %v", fileExists(entry), !tc.disarm)
			}
			if !reflect.DeepEqual(r.state.Completed, tc.completed) {
				t.Errorf("state %v, want %v", r.state.Completed, tc.completed)
			}
			if tc.disarm {
				st, err := readStateFile(r.statePath)
				if err != nil || st == nil || !reflect.DeepEqual(st.Completed, tc.completed) {
					t.Errorf("state file %+v (%v), want completed %v", st, err, tc.completed)
				}
				if !strings.Contains(console.String(), "boots nothing until an install completes") {
					t.Errorf("console %q", console.String())
				}
			}
		})
	}
}

// TestInvalidateStore: a resumed copy or build starts from a store whose
// paths are all invalid (the Nix database removed); a fresh one keeps it.
func TestInvalidateStore(t *testing.T) {
	for _, resume := range []bool{false, true} {
		root := t.TempDir()
		db := filepath.Join(root, "nix/var/nix/db")
		os.MkdirAll(db, 0o755)
		os.WriteFile(filepath.Join(db, "db.sqlite"), []byte("x"), 0o644)
		p := &Plan{Root: root}
		if resume {
			p.Resume = &Resume{State: testState(""), After: StepInstallKey}
		}
		r := &runner{p: p, log: &redactor{w: &bytes.Buffer{}}}
		if err := r.invalidateStore(); err != nil {
			t.Fatal(err)
		}
		if fileExists(db) == resume {
			t.Errorf("resume %v: database there %v", resume, fileExists(db))
		}
	}
}
