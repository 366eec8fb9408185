package pxe

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"pack.ag/tftp"
)

// TFTPHandler serves files read-only from a directory. It refuses absolute
// names, names with ".." components, and symlinks that leave the directory
// (the directory is opened as an os.Root, which enforces that).
type TFTPHandler struct {
	root  *os.Root
	event func(name, remote string, err error)
}

// NewTFTPHandler returns a handler confined to dir. event, when not nil, is
// called after each request with its outcome.
func NewTFTPHandler(dir string, event func(name, remote string, err error)) (*TFTPHandler, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("tftp root %s: %w", dir, err)
	}
	return &TFTPHandler{root: r, event: event}, nil
}

// ErrRefused is a TFTP request outside the bundle.
var ErrRefused = errors.New("path refused: outside the bundle")

// Open opens a requested name inside the root, or returns ErrRefused or a
// not-found error. Only regular files are served.
func (h *TFTPHandler) Open(name string) (*os.File, int64, error) {
	n := strings.ReplaceAll(name, "\\", "/")
	if n == "" || strings.HasPrefix(n, "/") || strings.ContainsRune(n, 0) || !filepath.IsLocal(n) {
		return nil, 0, ErrRefused
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return nil, 0, ErrRefused
		}
	}
	f, err := h.root.Open(filepath.Clean(n))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
			return nil, 0, ErrRefused
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, os.ErrNotExist
		}
		return nil, 0, ErrRefused
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, os.ErrNotExist
	}
	return f, fi.Size(), nil
}

// ServeTFTP implements tftp.ReadHandler.
func (h *TFTPHandler) ServeTFTP(w tftp.ReadRequest) {
	name := w.Name()
	remote := ""
	if a := w.Addr(); a != nil {
		remote = a.String()
	}
	var err error
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("transfer aborted: %v", r)
		}
		if h.event != nil {
			h.event(name, remote, err)
		}
	}()
	f, size, err := h.Open(name)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			w.WriteError(tftp.ErrCodeAccessViolation, "access violation")
		} else {
			w.WriteError(tftp.ErrCodeFileNotFound, "file not found")
		}
		return
	}
	defer f.Close()
	w.WriteSize(size)
	_, err = io.Copy(w, f)
}

// Close releases the root directory.
func (h *TFTPHandler) Close() error { return h.root.Close() }

func (s *Server) tftpEvent(name, remote string, err error) {
	if err != nil {
		s.logf("tftp %s %s: %v", remote, name, err)
	}
}
