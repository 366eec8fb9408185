package preflight

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/nixlos/nixlos/closure"
)

// Initrd is what the installed system's initrd can load: the kernel
// modules it carries and those its kernel has built in.
type Initrd struct {
	Path    string          // the initrd's store path (…-initrd-linux-6.6.32/initrd)
	Kernel  string          // the kernel version of its lib/modules/<version>
	Modules map[string]bool // module names, "-" written "_"
	Builtin map[string]bool // modules.builtin, the same way
}

// Has reports whether the initrd can load module (a module name or a
// driver name; "-" and "_" are the same).
func (i *Initrd) Has(module string) bool {
	m := modName(module)
	return i.Modules[m] || i.Builtin[m]
}

func modName(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

// ReadInitrd reads, from the binary cache at cacheURL (file:// or
// http(s)://, as closure.Source.URL), the initrd of the system toplevel:
// the toplevel's NAR gives its initrd symlink, the initrd's NAR the
// compressed cpio, whose lib/modules/<version>/ lists the modules. It only
// reads (signatures are checked when the closure is copied, not here).
func ReadInitrd(ctx context.Context, cacheURL, toplevel string, client *http.Client) (*Initrd, error) {
	if client == nil {
		client = http.DefaultClient
	}
	c := cache{url: strings.TrimRight(cacheURL, "/"), client: client}
	var target string
	err := c.nar(ctx, toplevel, func(p, typ, link string, r io.Reader) (bool, error) {
		if p == "initrd" && typ == "symlink" {
			target = link
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("system %s: %w", toplevel, err)
	}
	if target == "" {
		return nil, fmt.Errorf("system %s has no initrd", toplevel)
	}
	if !strings.HasPrefix(target, closure.StoreDir+"/") {
		return nil, fmt.Errorf("system %s: initrd %s is not a store path", toplevel, target)
	}
	rest := strings.TrimPrefix(target, closure.StoreDir+"/")
	storePath, inner, _ := strings.Cut(rest, "/")
	init := &Initrd{Path: target, Modules: map[string]bool{}, Builtin: map[string]bool{}}
	found := false
	err = c.nar(ctx, closure.StoreDir+"/"+storePath, func(p, typ, link string, r io.Reader) (bool, error) {
		if p != inner || typ != "regular" {
			return false, nil
		}
		found = true
		return true, readInitrdCPIO(r, init)
	})
	if err != nil {
		return nil, fmt.Errorf("initrd %s: %w", target, err)
	}
	if !found {
		return nil, fmt.Errorf("initrd %s: not in its store path's NAR", target)
	}
	return init, nil
}

type cache struct {
	url    string
	client *http.Client
}

func (c cache) open(ctx context.Context, rel string) (io.ReadCloser, error) {
	u := c.url + "/" + rel
	if p, ok := strings.CutPrefix(u, "file://"); ok {
		return os.Open(p)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return resp.Body, nil
}

// nar walks the NAR of storePath from the cache, calling fn for each entry
// until it returns true.
func (c cache) nar(ctx context.Context, storePath string, fn narFunc) error {
	hash, err := closure.HashPart(storePath)
	if err != nil {
		return err
	}
	f, err := c.open(ctx, hash+".narinfo")
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	f.Close()
	if err != nil {
		return err
	}
	ni, err := closure.ParseNarInfo(data)
	if err != nil {
		return err
	}
	body, err := c.open(ctx, ni.URL)
	if err != nil {
		return err
	}
	defer body.Close()
	r, err := decompressByName(ni.URL, body)
	if err != nil {
		return err
	}
	_, err = walkNAR(bufio.NewReaderSize(r, 1<<16), fn)
	return err
}

func decompressByName(name string, r io.Reader) (io.Reader, error) {
	switch {
	case strings.HasSuffix(name, ".zst"):
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case strings.HasSuffix(name, ".xz"):
		return xz.NewReader(r)
	case strings.HasSuffix(name, ".nar"):
		return r, nil
	}
	return nil, fmt.Errorf("%s: unknown NAR compression", name)
}

// narFunc is called for each NAR entry: its path relative to the NAR's
// root ("" for the root), type (regular, symlink, directory), a symlink's
// target, a regular file's contents. Returning true stops the walk.
type narFunc func(p, typ, link string, r io.Reader) (bool, error)

var errStop = errors.New("stop")

// walkNAR reads a NAR (Nix archive) and calls fn for each entry.
func walkNAR(r io.Reader, fn narFunc) (bool, error) {
	nr := &narReader{r: r}
	if s := nr.str(); s != "nix-archive-1" {
		if nr.err != nil {
			return false, nr.err
		}
		return false, fmt.Errorf("not a NAR (%q)", s)
	}
	err := nr.node("", fn)
	if errors.Is(err, errStop) {
		return true, nil
	}
	return false, err
}

type narReader struct {
	r   io.Reader
	err error
}

const maxNARString = 1 << 16

func (n *narReader) u64() uint64 {
	if n.err != nil {
		return 0
	}
	var b [8]byte
	if _, err := io.ReadFull(n.r, b[:]); err != nil {
		n.err = fmt.Errorf("NAR: %w", err)
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (n *narReader) pad(size uint64) {
	if p := (8 - size%8) % 8; p > 0 && n.err == nil {
		if _, err := io.CopyN(io.Discard, n.r, int64(p)); err != nil {
			n.err = fmt.Errorf("NAR: %w", err)
		}
	}
}

func (n *narReader) str() string {
	size := n.u64()
	if n.err != nil {
		return ""
	}
	if size > maxNARString {
		n.err = fmt.Errorf("NAR: string of %d bytes", size)
		return ""
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(n.r, b); err != nil {
		n.err = fmt.Errorf("NAR: %w", err)
		return ""
	}
	n.pad(size)
	return string(b)
}

func (n *narReader) expect(want string) error {
	if got := n.str(); got != want {
		if n.err != nil {
			return n.err
		}
		return fmt.Errorf("NAR: %q where %q belongs", got, want)
	}
	return nil
}

func (n *narReader) node(p string, fn narFunc) error {
	if err := n.expect("("); err != nil {
		return err
	}
	if err := n.expect("type"); err != nil {
		return err
	}
	switch typ := n.str(); typ {
	case "regular":
		tag := n.str()
		if tag == "executable" {
			if err := n.expect(""); err != nil {
				return err
			}
			tag = n.str()
		}
		if tag != "contents" {
			if n.err != nil {
				return n.err
			}
			return fmt.Errorf("NAR: %q where contents belong", tag)
		}
		size := n.u64()
		if n.err != nil {
			return n.err
		}
		lr := &io.LimitedReader{R: n.r, N: int64(size)}
		stop, err := fn(p, typ, "", lr)
		if err != nil {
			return err
		}
		if stop {
			return errStop
		}
		if _, err := io.Copy(io.Discard, lr); err != nil {
			return fmt.Errorf("NAR: %w", err)
		}
		if lr.N > 0 {
			return fmt.Errorf("NAR: file %s cut short", p)
		}
		n.pad(size)
	case "symlink":
		if err := n.expect("target"); err != nil {
			return err
		}
		target := n.str()
		if n.err != nil {
			return n.err
		}
		stop, err := fn(p, typ, target, nil)
		if err != nil {
			return err
		}
		if stop {
			return errStop
		}
	case "directory":
		if stop, err := fn(p, typ, "", nil); err != nil || stop {
			if stop {
				return errStop
			}
			return err
		}
		for {
			tag := n.str()
			if n.err != nil {
				return n.err
			}
			if tag == ")" {
				return nil
			}
			if tag != "entry" {
				return fmt.Errorf("NAR: %q where an entry belongs", tag)
			}
			if err := n.expect("("); err != nil {
				return err
			}
			if err := n.expect("name"); err != nil {
				return err
			}
			name := n.str()
			if n.err != nil {
				return n.err
			}
			if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
				return fmt.Errorf("NAR: bad entry name %q", name)
			}
			if err := n.expect("node"); err != nil {
				return err
			}
			child := name
			if p != "" {
				child = p + "/" + name
			}
			if err := n.node(child, fn); err != nil {
				return err
			}
			if err := n.expect(")"); err != nil {
				return err
			}
		}
	default:
		if n.err != nil {
			return n.err
		}
		return fmt.Errorf("NAR: unknown type %q", typ)
	}
	return n.expect(")")
}

// readInitrdCPIO reads a (compressed) initrd: one or more newc cpio
// archives, each plain or compressed (zstd, gzip, xz), and fills in the
// modules under lib/modules/<version>/ and its modules.builtin.
func readInitrdCPIO(r io.Reader, init *Initrd) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		// Skip the zero padding between archives.
		for {
			b, err := br.Peek(1)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if b[0] != 0 {
				break
			}
			br.ReadByte()
		}
		magic, _ := br.Peek(6)
		var src io.Reader
		switch {
		case bytes.HasPrefix(magic, []byte("070701")), bytes.HasPrefix(magic, []byte("070702")):
			if err := readCPIO(br, init); err != nil {
				return err
			}
			continue
		case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			d, err := zstd.NewReader(br)
			if err != nil {
				return err
			}
			defer d.Close()
			src = d
		case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
			g, err := gzip.NewReader(br)
			if err != nil {
				return err
			}
			src = g
		case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z'}):
			x, err := xz.NewReader(br)
			if err != nil {
				return err
			}
			src = x
		default:
			return fmt.Errorf("initrd: unknown format (starts % x): only cpio, zstd, gzip and xz are read", magic)
		}
		// A compressed segment is the rest of the file (it may hold
		// several archives itself).
		return readInitrdCPIO(src, init)
	}
}

// readCPIO reads one newc archive up to its trailer.
func readCPIO(br *bufio.Reader, init *Initrd) error {
	hdr := make([]byte, 110)
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			return fmt.Errorf("cpio: %w", err)
		}
		if string(hdr[:5]) != "07070" {
			return fmt.Errorf("cpio: bad header %q", hdr[:6])
		}
		field := func(i int) (uint64, error) {
			return strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		}
		fileSize, err1 := field(6)
		nameSize, err2 := field(11)
		if err1 != nil || err2 != nil || nameSize == 0 || nameSize > 4096 {
			return fmt.Errorf("cpio: bad header")
		}
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(br, name); err != nil {
			return fmt.Errorf("cpio: %w", err)
		}
		if _, err := br.Discard(int((4 - (110+nameSize)%4) % 4)); err != nil {
			return fmt.Errorf("cpio: %w", err)
		}
		n := strings.TrimRight(string(name), "\x00")
		if n == "TRAILER!!!" {
			return nil
		}
		var data []byte
		_, mods, isMods := strings.Cut(n, "lib/modules/")
		isBuiltin := isMods && path.Base(mods) == "modules.builtin"
		if isBuiltin && fileSize < 1<<24 {
			data = make([]byte, fileSize)
			if _, err := io.ReadFull(br, data); err != nil {
				return fmt.Errorf("cpio: %w", err)
			}
		} else if _, err := br.Discard(int(fileSize)); err != nil {
			return fmt.Errorf("cpio: %w", err)
		}
		if _, err := br.Discard(int((4 - fileSize%4) % 4)); err != nil && err != io.EOF {
			return fmt.Errorf("cpio: %w", err)
		}
		if !isMods {
			continue
		}
		if init.Kernel == "" {
			init.Kernel, _, _ = strings.Cut(mods, "/")
		}
		switch {
		case isBuiltin:
			for _, l := range strings.Split(string(data), "\n") {
				if l = strings.TrimSpace(l); l != "" {
					init.Builtin[modName(l)] = true
				}
			}
		case strings.Contains(path.Base(mods), ".ko"):
			init.Modules[modName(mods)] = true
		}
	}
}
