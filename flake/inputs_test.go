package flake

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A lock file with nested inputs, a follows path and the kinds of source
// lockedURL writes.
const testLock = `{
  "nodes": {
    "disko": {
      "inputs": { "nixpkgs": [ "nixpkgs" ] },
      "locked": { "lastModified": 1, "narHash": "sha256-disko", "owner": "nix-community", "repo": "disko", "rev": "abc", "type": "github" },
      "original": { "owner": "nix-community", "repo": "disko", "type": "github" }
    },
    "nixpkgs": {
      "locked": { "lastModified": 2, "narHash": "sha256-nixpkgs", "path": "/srv/nixpkgs", "type": "path" },
      "original": { "path": "/srv/nixpkgs", "type": "path" }
    },
    "tool": {
      "inputs": { "lib": "lib" },
      "locked": { "narHash": "sha256-tool", "rev": "r1", "type": "git", "url": "https://example.org/tool" }
    },
    "lib": { "flake": false, "locked": { "narHash": "sha256-lib", "type": "tarball", "url": "https://example.org/lib.tar.gz" } },
    "root": { "inputs": { "disko": "disko", "nixpkgs": "nixpkgs", "tool": "tool" } }
  },
  "root": "root",
  "version": 7
}`

const testArchive = `{"path":"/nix/store/00000000000000000000000000000000-source","inputs":{
  "disko":{"path":"/nix/store/11111111111111111111111111111111-source","inputs":{"nixpkgs":{"path":"/nix/store/22222222222222222222222222222222-source","inputs":{}}}},
  "nixpkgs":{"path":"/nix/store/22222222222222222222222222222222-source","inputs":{}},
  "tool":{"path":"/nix/store/33333333333333333333333333333333-source","inputs":{"lib":{"path":"/nix/store/44444444444444444444444444444444-source","inputs":{}}}}}}`

func TestParseInputs(t *testing.T) {
	want := []Input{
		{Name: "disko", URL: "github:nix-community/disko/abc", NarHash: "sha256-disko", StorePath: "/nix/store/11111111111111111111111111111111-source"},
		{Name: "nixpkgs", URL: "path:/srv/nixpkgs", NarHash: "sha256-nixpkgs", StorePath: "/nix/store/22222222222222222222222222222222-source"},
		{Name: "tool", URL: "git+https://example.org/tool?rev=r1", NarHash: "sha256-tool", StorePath: "/nix/store/33333333333333333333333333333333-source"},
		{Name: "tool/lib", URL: "https://example.org/lib.tar.gz", NarHash: "sha256-lib", StorePath: "/nix/store/44444444444444444444444444444444-source"},
	}
	for _, tc := range []struct {
		name    string
		lock    string
		archive string
		want    []Input
		err     string
	}{
		{name: "nested and follows", lock: testLock, archive: testArchive, want: want},
		{name: "no inputs, no lock", lock: "", archive: `{"path":"/nix/store/x-source","inputs":{}}`},
		{name: "inputs without a lock", lock: "", archive: testArchive, err: "not locked"},
		{name: "follows to nowhere", lock: strings.Replace(testLock, `[ "nixpkgs" ]`, `[ "nosuch" ]`, 1), archive: testArchive, err: `no input "nosuch"`},
		{name: "archive lacks an input", lock: testLock, archive: `{"path":"/nix/store/x","inputs":{"disko":{"path":"/nix/store/1-source","inputs":{}}}}`, err: "no store path for input"},
		{name: "bad lock", lock: "{", archive: testArchive, err: "flake.lock"},
		{name: "bad archive", lock: testLock, archive: "nope", err: "archive output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lock []byte
			if tc.lock != "" {
				lock = []byte(tc.lock)
			}
			got, err := parseInputs(lock, []byte(tc.archive))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
}

// FuzzParseInputs: never panics; every input it returns has a name and a
// store path.
func FuzzParseInputs(f *testing.F) {
	f.Add([]byte(testLock), []byte(testArchive))
	f.Add([]byte(`{"nodes":{"root":{"inputs":{"a":["a"]}}}}`), []byte(`{"inputs":{"a":{"path":"/nix/store/a"}}}`))
	f.Add([]byte(`{"nodes":{"root":{"inputs":{"a":1}}}}`), []byte(`{"inputs":{"a":{}}}`))
	f.Fuzz(func(t *testing.T, lock, archive []byte) {
		in, err := parseInputs(lock, archive)
		if err != nil {
			return
		}
		for _, i := range in {
			if i.Name == "" || !strings.HasPrefix(i.StorePath, "/nix/store/") {
				t.Fatalf("input %+v", i)
			}
		}
	})
}

// TestInputsPathInput: a flake whose input is a path: tree. Inputs fetches
// it into the store and names it with the lock's narHash; without a lock
// file it is ErrNotLocked (and the flake directory is not written).
func TestInputsPathInput(t *testing.T) {
	needNix(t)
	ctx := context.Background()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "default.nix"), []byte("{ x = 42; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := writeFlake(t, `{ inputs.src = { url = "path:`+src+`"; flake = false; };
  outputs = { self, src }: { v = (import src).x; }; }`)
	f, err := Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Inputs(ctx, f, Nix{}); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("unlocked flake: %v, want ErrNotLocked", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockFile)); err == nil {
		t.Fatalf("Inputs wrote %s", LockFile)
	}
	args := append(append([]string{}, Flags...), "flake", "lock", f.Ref())
	if out, err := exec.Command("nix", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix flake lock: %v\n%s", err, out)
	}
	in, err := Inputs(ctx, f, Nix{})
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].Name != "src" || in[0].URL != "path:"+src || !strings.HasPrefix(in[0].NarHash, "sha256-") {
		t.Fatalf("inputs %+v", in)
	}
	if _, err := os.Stat(filepath.Join(in[0].StorePath, "default.nix")); err != nil {
		t.Errorf("the input is not in the store: %v", err)
	}
}
