package flake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Input is one locked input of a flake (a node of its flake.lock) and the
// store path Nix fetched it to: what `mkiso build` carries on the media so
// that the installer evaluates and builds the flake with no network. Nix
// finds an input by its narHash (the lock's), so nothing is rewritten: the
// store path only has to be in the store.
type Input struct {
	// Name is the input's path from the flake: "nixpkgs", "disko/nixpkgs"
	// (an input of an input). An input reached twice (follows) is named once.
	Name string `json:"name"`
	// URL is the locked source as a flake reference: "path:/srv/nixpkgs",
	// "github:NixOS/nixpkgs/<rev>", "git+https://…?rev=…".
	URL string `json:"url"`
	// NarHash is the lock file's narHash (SRI), which Nix checks.
	NarHash string `json:"narHash"`
	// StorePath is where the source is in the Nix store (/nix/store/…-source).
	StorePath string `json:"storePath"`
}

// LockFile is the name of a flake's lock file.
const LockFile = "flake.lock"

// ErrNotLocked: the flake has inputs but no (complete) flake.lock, so the
// installer could not find them by their narHash.
var ErrNotLocked = errors.New("the flake's inputs are not locked (no flake.lock, or it needs changes)")

// Inputs fetches the locked inputs of f into this machine's Nix store
// (`nix flake archive --json --no-update-lock-file`, offline as every nix
// call here) and returns them, flattened, in the order of the lock file
// (breadth first, names sorted). A flake without inputs gives none. A flake
// whose lock file is missing or out of date wraps ErrNotLocked; an input
// that cannot be fetched here (a path: input that does not exist on this
// machine and is not in its store, a github: input with no network) is
// the nix error.
func Inputs(ctx context.Context, f *Flake, nix Nix) ([]Input, error) {
	out, err := nix.Run(ctx, "flake", "archive", "--json", "--no-update-lock-file", f.Ref())
	if err != nil {
		var ne *NixError
		if errors.As(err, &ne) && strings.Contains(ne.Stderr, "requires lock file changes") {
			return nil, fmt.Errorf("%w: %v", ErrNotLocked, err)
		}
		return nil, err
	}
	lock, err := os.ReadFile(filepath.Join(f.Dir, LockFile))
	if errors.Is(err, os.ErrNotExist) {
		lock = nil // no inputs: nix did not need one
	} else if err != nil {
		return nil, err
	}
	return parseInputs(lock, out)
}

// archiveNode is `nix flake archive --json`'s output: a store path and the
// inputs under their names.
type archiveNode struct {
	Path   string                 `json:"path"`
	Inputs map[string]archiveNode `json:"inputs"`
}

// lockNode is a node of flake.lock (version 5 to 7). An input is a node
// key (string) or a follows path from the root ([]string).
type lockNode struct {
	Inputs   map[string]json.RawMessage `json:"inputs"`
	Locked   map[string]any             `json:"locked"`
	Original map[string]any             `json:"original"`
}

type lockFile struct {
	Nodes   map[string]lockNode `json:"nodes"`
	Root    string              `json:"root"`
	Version int                 `json:"version"`
}

// parseInputs pairs the lock file's nodes with the store paths of the
// archive output. lock may be nil when the archive names no inputs.
func parseInputs(lock, archive []byte) ([]Input, error) {
	var a archiveNode
	if err := json.Unmarshal(archive, &a); err != nil {
		return nil, fmt.Errorf("nix flake archive output: %w", err)
	}
	if len(a.Inputs) == 0 {
		return nil, nil
	}
	if lock == nil {
		return nil, fmt.Errorf("%w: the flake has inputs but no %s", ErrNotLocked, LockFile)
	}
	var l lockFile
	if err := json.Unmarshal(lock, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", LockFile, err)
	}
	if l.Root == "" {
		l.Root = "root"
	}
	if _, ok := l.Nodes[l.Root]; !ok {
		return nil, fmt.Errorf("%s: no root node %q", LockFile, l.Root)
	}
	type item struct {
		key  string
		name []string
		arch archiveNode
	}
	var out []Input
	seen := map[string]bool{l.Root: true}
	queue := []item{{key: l.Root, arch: a}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		node := l.Nodes[it.key]
		names := make([]string, 0, len(node.Inputs))
		for n := range node.Inputs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			key, err := l.resolve(node.Inputs[n], 0)
			if err != nil {
				return nil, fmt.Errorf("%s: input %s: %w", LockFile, strings.Join(append(it.name, n), "/"), err)
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			name := append(append([]string{}, it.name...), n)
			sub, ok := it.arch.Inputs[n]
			if !ok || !strings.HasPrefix(sub.Path, "/nix/store/") {
				return nil, fmt.Errorf("nix flake archive names no store path for input %s", strings.Join(name, "/"))
			}
			locked := l.Nodes[key].Locked
			hash, _ := locked["narHash"].(string)
			out = append(out, Input{Name: strings.Join(name, "/"), URL: lockedURL(locked), NarHash: hash, StorePath: sub.Path})
			queue = append(queue, item{key: key, name: name, arch: sub})
		}
	}
	return out, nil
}

// resolve turns an input reference (a node key, or a follows path from
// the root) into a node key.
func (l *lockFile) resolve(ref json.RawMessage, depth int) (string, error) {
	if depth > 32 {
		return "", errors.New("follows loop")
	}
	var key string
	if err := json.Unmarshal(ref, &key); err == nil {
		if _, ok := l.Nodes[key]; !ok {
			return "", fmt.Errorf("no node %q", key)
		}
		return key, nil
	}
	var path []string
	if err := json.Unmarshal(ref, &path); err != nil {
		return "", fmt.Errorf("input is neither a node nor a follows path: %s", ref)
	}
	key = l.Root
	for _, p := range path {
		next, ok := l.Nodes[key].Inputs[p]
		if !ok {
			return "", fmt.Errorf("follows %s: no input %q", strings.Join(path, "/"), p)
		}
		k, err := l.resolve(next, depth+1)
		if err != nil {
			return "", err
		}
		key = k
	}
	return key, nil
}

// lockedURL writes a lock file's locked attributes as a flake reference.
func lockedURL(a map[string]any) string {
	s := func(k string) string { v, _ := a[k].(string); return v }
	switch t := s("type"); t {
	case "path":
		return "path:" + s("path")
	case "github", "gitlab", "sourcehut":
		return t + ":" + s("owner") + "/" + s("repo") + "/" + s("rev")
	case "git", "hg":
		u := t + "+" + s("url")
		if r := s("rev"); r != "" {
			u += "?rev=" + r
		}
		return u
	case "tarball", "file":
		return s("url")
	case "indirect":
		return "flake:" + s("id")
	default:
		b, _ := json.Marshal(a)
		return t + ":" + string(b)
	}
}
