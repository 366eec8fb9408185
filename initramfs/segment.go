package initramfs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/fsutil"
)

// A producer makes one cached segment of the initrd (base, modules,
// tools). Build runs each through builder.cached, which owns the cache:
// look the key up, make the segment on a miss, record what it read.
type producer interface {
	// name is the segment's name, as Segment and SegmentCompression name it.
	name() string
	// key names the segment's contents compressed with c: every input but
	// the host files make reports (the cache re-checks those on a hit).
	key(ctx context.Context, b *builder, c cpio.Compression) (string, error)
	// make writes the segment, compressed with c, to dst and returns the
	// host files it read and the extra metadata report will get back.
	make(ctx context.Context, b *builder, c cpio.Compression, dst string) (files []string, extra any, err error)
	// report puts what extra says (from make, or from the cache) into rep;
	// an error makes a cache hit a miss.
	report(extra json.RawMessage, rep *Report) error
}

// builder is one Build: the spec with its defaults and where it builds.
type builder struct {
	spec     Spec
	modDir   string // Go module (FindModuleDir)
	cache    cache
	progress io.Writer
	cleanup  []string // temporary directories
}

func (b *builder) close() {
	for _, d := range b.cleanup {
		os.RemoveAll(d)
	}
}

// tempDir makes a temporary directory that lives until close.
func (b *builder) tempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp("", pattern)
	if err == nil {
		b.cleanup = append(b.cleanup, d)
	}
	return d, err
}

// cached returns p's segment from the cache, or makes it and caches it.
func (b *builder) cached(ctx context.Context, p producer, rep *Report) (Segment, error) {
	t := time.Now()
	c := SegmentCompression(b.spec.Compression, p.name())
	key, err := p.key(ctx, b, c)
	if err != nil {
		return Segment{}, err
	}
	path := b.cache.path(p.name(), key, c)
	seg := Segment{Name: p.name(), Key: key, Path: path}
	if hit, extra := b.cache.lookup(path); hit && p.report(extra, rep) == nil {
		seg.CacheHit = true
	} else {
		files, ex, err := p.make(ctx, b, c, path)
		if err != nil {
			return seg, err
		}
		extra, err := b.cache.store(path, files, ex)
		if err != nil {
			return seg, err
		}
		if err := p.report(extra, rep); err != nil {
			return seg, err
		}
	}
	seg.Bytes = fileSize(path)
	seg.Duration = time.Since(t)
	fmt.Fprintf(b.progress, "initramfs: %-7s %s %8s  %s\n", seg.Name, hitWord(seg.CacheHit), humanBytes(seg.Bytes), seg.Duration.Round(time.Millisecond))
	return seg, nil
}

// cachedParts runs the producers in order.
func (b *builder) cachedParts(ctx context.Context, producers []producer, rep *Report) ([]part, error) {
	var parts []part
	for _, p := range producers {
		seg, err := b.cached(ctx, p, rep)
		if err != nil {
			return nil, err
		}
		parts = append(parts, part{seg: seg})
	}
	return parts, nil
}

// perBuildParts adds the segments never cached to the cached ones: the
// age key (if any) before tools, as lz4 segments must come last, and the
// build segment at the end.
func (b *builder) perBuildParts(parts []part, installer string) ([]part, error) {
	build, err := b.spec.buildTree(installer)
	if err != nil {
		return nil, err
	}
	if b.spec.AgeKey != nil {
		i := slices.IndexFunc(parts, func(p part) bool { return p.seg.Name == "tools" })
		parts = slices.Insert(parts, i, part{seg: Segment{Name: "key"}, tree: b.spec.keyTree()})
	}
	return append(parts, part{seg: Segment{Name: "build"}, tree: build}), nil
}

// finish reports the segments, prints the build segment's line and
// prunes the cache. d is the time the per-build segments took.
func (b *builder) finish(rep *Report, parts []part, bin installerResult, d time.Duration) {
	for _, p := range parts {
		rep.Segments = append(rep.Segments, p.seg)
	}
	last := &rep.Segments[len(rep.Segments)-1]
	last.Duration = d + bin.dur
	rep.InstallerCached = bin.hit
	fmt.Fprintf(b.progress, "initramfs: %-7s %s %8s  %s (installer %s %s)\n", last.Name, "built ", humanBytes(last.Bytes),
		last.Duration.Round(time.Millisecond), bin.how(b.spec), bin.dur.Round(time.Millisecond))
	if !b.spec.NoCache {
		b.cache.prune(b.used(bin, rep), cacheKeep)
	}
}

// A part is one segment of the output: a cached file (Segment.Path) or,
// for the segments never cached (key, build), a tree written in place.
type part struct {
	seg  Segment
	tree *cpio.Tree
}

// assemble writes the parts, in order, to the output, filling in the size
// of each tree part, and returns the output's size. With an age key the
// output is 0600 from its first byte.
func (b *builder) assemble(parts []part) (int64, error) {
	mode := os.FileMode(0o644)
	if b.spec.AgeKey != nil {
		mode = 0o600
	}
	return fsutil.WriteAtomic(b.spec.Output, mode, func(w io.Writer) error {
		for i := range parts {
			if err := b.writePart(w, &parts[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *builder) writePart(w io.Writer, p *part) error {
	if p.tree != nil {
		cw := &countWriter{w: w}
		err := p.tree.WriteCompressed(cw, SegmentCompression(b.spec.Compression, p.seg.Name), b.spec.SourceDateEpoch)
		p.seg.Bytes = cw.n
		return err
	}
	f, err := os.Open(p.seg.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// writeSegment writes t compressed with c to dst (atomically).
func writeSegment(t *cpio.Tree, c cpio.Compression, mtime int64, dst string) error {
	_, err := fsutil.WriteAtomic(dst, 0o644, func(w io.Writer) error { return t.WriteCompressed(w, c, mtime) })
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func hitWord(hit bool) string {
	if hit {
		return "cached"
	}
	return "built "
}

func humanBytes(n int64) string {
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}
