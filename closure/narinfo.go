package closure

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// StoreDir is the Nix store every cache here is for.
const StoreDir = "/nix/store"

// NarInfo is one .narinfo file of a binary cache.
type NarInfo struct {
	StorePath  string
	URL        string
	FileSize   int64
	NarHash    string
	NarSize    int64
	References []string // base names (hash-name)
	Sigs       []string
	CA         string
}

// ParseNarInfo reads a .narinfo file.
func ParseNarInfo(data []byte) (*NarInfo, error) {
	n := &NarInfo{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			if k, ok = strings.CutSuffix(line, ":"); !ok {
				return nil, fmt.Errorf("narinfo: bad line %q", line)
			}
		}
		var err error
		switch k {
		case "StorePath":
			n.StorePath = v
		case "URL":
			n.URL = v
		case "FileSize":
			n.FileSize, err = strconv.ParseInt(v, 10, 64)
		case "NarHash":
			n.NarHash = v
		case "NarSize":
			n.NarSize, err = strconv.ParseInt(v, 10, 64)
		case "References":
			n.References = strings.Fields(v)
		case "Sig":
			n.Sigs = append(n.Sigs, v)
		case "CA":
			n.CA = v
		}
		if err != nil {
			return nil, fmt.Errorf("narinfo %s: %w", k, err)
		}
	}
	if !strings.HasPrefix(n.StorePath, StoreDir+"/") || n.NarHash == "" || n.URL == "" {
		return nil, errors.New("narinfo: StorePath, NarHash and URL are required")
	}
	return n, nil
}

// Fingerprint is what Nix signs: 1;PATH;NARHASH;NARSIZE;REF,REF…
func (n *NarInfo) Fingerprint() string {
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = StoreDir + "/" + r
	}
	return fmt.Sprintf("1;%s;%s;%d;%s", n.StorePath, n.NarHash, n.NarSize, strings.Join(refs, ","))
}

// SignedBy reports whether one of n's signatures is key's.
func (n *NarInfo) SignedBy(key PublicKey) bool {
	fp := n.Fingerprint()
	for _, s := range n.Sigs {
		if key.Verify(fp, s) {
			return true
		}
	}
	return false
}

// HashPart is the 32-character hash of a store path (its narinfo's name).
func HashPart(storePath string) (string, error) {
	base := path.Base(storePath)
	if !strings.HasPrefix(storePath, StoreDir+"/") || len(base) < 34 || base[32] != '-' {
		return "", fmt.Errorf("%q is not a store path under %s", storePath, StoreDir)
	}
	return base[:32], nil
}

// Summary is a closure as a cache holds it.
type Summary struct {
	Toplevel string `json:"toplevel"`
	Paths    int    `json:"paths"`
	NarSize  int64  `json:"narSize"`  // sum of the NAR sizes: what the target store gets
	FileSize int64  `json:"fileSize"` // sum of the compressed files on the medium
	// Signed says every path carries a signature of the manifest's key
	// (input-addressed paths must; content-addressed ones may go without).
	Signed bool `json:"signed"`
	// Missing lists paths of the closure the cache does not hold.
	Missing []string `json:"missing,omitempty"`
}

// Summarize walks the closure of toplevel through the cache in fsys (whose
// root is the cache directory) and sums its sizes. key may be zero (not
// checked).
func Summarize(fsys fs.FS, toplevel string, key PublicKey) (Summary, error) {
	s := Summary{Toplevel: toplevel, Signed: key.Key != nil}
	if _, err := HashPart(toplevel); err != nil {
		return s, err
	}
	seen := map[string]bool{}
	queue := []string{path.Base(toplevel)}
	for len(queue) > 0 {
		base := queue[0]
		queue = queue[1:]
		if seen[base] {
			continue
		}
		seen[base] = true
		hash, err := HashPart(StoreDir + "/" + base)
		if err != nil {
			return s, err
		}
		data, err := fs.ReadFile(fsys, hash+".narinfo")
		if errors.Is(err, fs.ErrNotExist) {
			s.Missing = append(s.Missing, StoreDir+"/"+base)
			continue
		}
		if err != nil {
			return s, err
		}
		n, err := ParseNarInfo(data)
		if err != nil {
			return s, fmt.Errorf("%s.narinfo: %w", hash, err)
		}
		s.Paths++
		s.NarSize += n.NarSize
		s.FileSize += n.FileSize
		if key.Key != nil && n.CA == "" && !n.SignedBy(key) {
			s.Signed = false
		}
		queue = append(queue, n.References...)
	}
	slices.Sort(s.Missing)
	if len(s.Missing) > 0 {
		s.Signed = false
	}
	return s, nil
}
