package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultChunk is the write (and read-back) size: large, and a multiple of
// every logical block size, so O_DIRECT writes need no bouncing.
const DefaultChunk = 4 << 20

// align is the buffer and offset alignment O_DIRECT needs (≥ any logical
// block size in use: 512 or 4096).
const align = 4096

// IOOptions tune Write and Verify.
type IOOptions struct {
	// Chunk is the size of each write and read (default DefaultChunk,
	// rounded down to a multiple of 4096).
	Chunk int
	// Progress, when set, is called with the bytes done after each chunk.
	Progress func(done uint64)
}

func (o IOOptions) chunk() int {
	c := o.Chunk
	if c <= 0 {
		c = DefaultChunk
	}
	if c < align {
		c = align
	}
	return c / align * align
}

// alignedBuf returns a buffer of n bytes whose address is 4096-aligned.
func alignedBuf(n int) []byte {
	b := make([]byte, n+align)
	off := 0
	if r := int(uintptrOf(b) % align); r != 0 {
		off = align - r
	}
	return b[off : off+n : off+n]
}

// openDirect opens path with flags|O_DIRECT, falling back to plain flags
// where the filesystem does not support O_DIRECT (tmpfs: EINVAL).
func openDirect(path string, flags int) (*os.File, bool, error) {
	f, err := os.OpenFile(path, flags|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, flags|unix.O_CLOEXEC, 0)
	return f, false, err
}

func isBlockDevice(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// WriteResult is what Write did.
type WriteResult struct {
	Bytes  uint64        // bytes of the image written
	SHA256 string        // hex SHA-256 of the image bytes as read while writing
	Direct bool          // O_DIRECT was used
	Took   time.Duration // write + fsync
}

// Write copies the image at src (a file or device) to the start of target
// (a block device, opened O_EXCL so the kernel refuses it while mounted,
// or an existing file) in aligned chunks, with O_DIRECT when the target
// supports it, and fsyncs it. It hashes the image bytes as it reads them.
// It never creates or truncates target.
func Write(ctx context.Context, src, target string, o IOOptions) (WriteResult, error) {
	start := time.Now()
	in, err := os.Open(src)
	if err != nil {
		return WriteResult{}, err
	}
	defer in.Close()
	flags := os.O_WRONLY
	if fi, err := os.Stat(target); err == nil && fi.Mode()&os.ModeDevice != 0 {
		flags |= unix.O_EXCL // block device: EBUSY while mounted or held
	}
	out, direct, err := openDirect(target, flags)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return WriteResult{}, fmt.Errorf("open %s: the kernel says it is busy (mounted or held by another device): %w", target, err)
		}
		return WriteResult{}, err
	}
	defer out.Close()
	openedDirect := direct
	h := sha256.New()
	buf := alignedBuf(o.chunk())
	var done uint64
	for {
		if err := ctx.Err(); err != nil {
			return WriteResult{}, err
		}
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			h.Write(buf[:n])
			if direct && n%align != 0 {
				// The image's tail is not a whole number of blocks: write it
				// through the page cache (fsync below still flushes it).
				if err := setDirect(out, false); err != nil {
					return WriteResult{}, err
				}
				direct = false
			}
			if _, err := out.WriteAt(buf[:n], int64(done)); err != nil {
				return WriteResult{}, fmt.Errorf("write %s at %d: %w", target, done, err)
			}
			done += uint64(n)
			if o.Progress != nil {
				o.Progress(done)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return WriteResult{}, fmt.Errorf("read %s: %w", src, rerr)
		}
	}
	if err := out.Sync(); err != nil {
		return WriteResult{}, fmt.Errorf("fsync %s: %w", target, err)
	}
	return WriteResult{Bytes: done, SHA256: hex.EncodeToString(h.Sum(nil)), Direct: openedDirect, Took: time.Since(start)}, nil
}

func setDirect(f *os.File, on bool) error {
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(f.Fd(), unix.F_SETFL, fl)
	return err
}

// DropCaches drops target's cached pages so a read-back comes from the
// medium: BLKFLSBUF for a block device (flushes and invalidates its buffer
// cache), posix_fadvise(DONTNEED) for anything.
func DropCaches(target string) error {
	f, err := os.OpenFile(target, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", target, err)
	}
	if isBlockDevice(f) {
		if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("BLKFLSBUF %s: %w", target, err)
		}
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("posix_fadvise DONTNEED %s: %w", target, err)
	}
	return nil
}

// VerifyResult is what Verify read.
type VerifyResult struct {
	SHA256 string
	Direct bool
	Took   time.Duration
}

// Verify reads the first size bytes of target back (O_DIRECT when
// possible, so past any cache) and returns their SHA-256. A target shorter
// than size is an error.
func Verify(ctx context.Context, target string, size uint64, o IOOptions) (VerifyResult, error) {
	start := time.Now()
	f, direct, err := openDirect(target, os.O_RDONLY)
	if err != nil {
		return VerifyResult{}, err
	}
	defer f.Close()
	h := sha256.New()
	buf := alignedBuf(o.chunk())
	var done uint64
	for done < size {
		if err := ctx.Err(); err != nil {
			return VerifyResult{}, err
		}
		want := uint64(len(buf))
		if rem := size - done; rem < want {
			want = rem
			if direct { // whole blocks only: read past the end and keep the image's part
				want = (rem + align - 1) / align * align
			}
		}
		n, err := f.ReadAt(buf[:want], int64(done))
		if uint64(n) > size-done {
			n = int(size - done)
		}
		h.Write(buf[:n])
		done += uint64(n)
		if o.Progress != nil && n > 0 {
			o.Progress(done)
		}
		if err == io.EOF || (err == nil && n == 0) {
			if done < size {
				return VerifyResult{}, fmt.Errorf("read back %s: it ends at %d bytes, the image has %d", target, done, size)
			}
			break
		}
		if err != nil && done < size {
			return VerifyResult{}, fmt.Errorf("read back %s at %d: %w", target, done, err)
		}
	}
	return VerifyResult{SHA256: hex.EncodeToString(h.Sum(nil)), Direct: direct, Took: time.Since(start)}, nil
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
