package closure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixlos/nixlos/blockdev"
	"github.com/nixlos/nixlos/hw"
)

// MediaMount is where the installer mounts the boot medium's cache
// filesystem, read-only.
const MediaMount = "/run/nixlos/media"

// DefaultMediaWait is how long Locate waits for a boot medium with the
// closure when no server is given.
const DefaultMediaWait = 30 * time.Second

// ErrNotFound is returned (wrapped) by Locate when no medium or server
// holds the closure: the install then builds the system instead.
var ErrNotFound = errors.New("no cache holds the closure")

// Source is a binary cache that holds a system closure, signed with the
// manifest's key.
type Source struct {
	URL    string    // file:///run/nixlos/media/nix-cache or http://ADDR:PORT/nix-cache
	Where  string    // for people: "/dev/sr0 (iso9660 NIXLOS)", "server http://…"
	Key    PublicKey // the only key trusted
	Nix    string    // nix binary; "" = nix from PATH
	umount string    // mount point to release on Close
}

// LocateOptions say what to look for and where.
type LocateOptions struct {
	Toplevel string // the system's store path (manifest hosts.H.toplevel), or any path the cache must hold
	// PublicKey is the cache's key (manifest cache.publicKey); "" for a
	// cache of the flake's inputs only: then only content-addressed paths
	// copy (Nix checks them by their hash).
	PublicKey string
	// Disks are the machine's disks (hw.Disks): the boot medium among them
	// is searched. Nil: hw.Disks is called.
	Disks []hw.Disk
	// Devices, when set, are the only block devices tried (tests).
	Devices []string
	// Server is the nixlos.server URL; its /nix-cache is tried when no
	// medium holds the closure.
	Server string
	// MountPoint is where a medium is mounted (default MediaMount).
	MountPoint string
	// Wait is how long to keep looking for the medium when none holds
	// the closure yet (disks are detected again every second): a USB stick
	// appears seconds after the installer starts. 0 = DefaultMediaWait
	// when neither Devices nor Server is set, else (and when negative) no
	// waiting.
	Wait   time.Duration
	Nix    string
	Client *http.Client // nil = a client with a 10 s timeout
	Log    io.Writer
}

// Locate finds a cache holding opt.Toplevel: on the boot medium (the ISO's
// filesystem, or the USB image's NIXLOS-CACHE partition, mounted read-only
// at MediaMount), else on the PXE server. It only reads; errors other than
// "not found" are reported on opt.Log and the next place is tried. The
// result wraps ErrNotFound when nothing holds the closure. Close the
// Source when done (it unmounts the medium).
func Locate(ctx context.Context, opt LocateOptions) (*Source, error) {
	log := opt.Log
	if log == nil {
		log = io.Discard
	}
	hash, err := HashPart(opt.Toplevel)
	if err != nil {
		return nil, err
	}
	var key PublicKey // none: a cache of content-addressed inputs only
	if opt.PublicKey != "" {
		if key, err = ParsePublicKey(opt.PublicKey); err != nil {
			return nil, fmt.Errorf("manifest cache key: %w", err)
		}
	}
	mnt := opt.MountPoint
	if mnt == "" {
		mnt = MediaMount
	}
	wait := opt.Wait
	if wait == 0 && opt.Devices == nil && opt.Server == "" {
		wait = DefaultMediaWait
	}
	deadline := time.Now().Add(max(wait, 0))
	disks := opt.Disks
	var tried []string
	var devs []string
	for round := 0; ; round++ {
		devs = opt.Devices
		if devs == nil {
			if disks == nil || round > 0 { // re-detect: a USB stick appears late
				if disks, err = hw.Disks(hw.Options{}); err != nil {
					fmt.Fprintf(log, "closure: cannot list disks: %v\n", err)
				}
			}
			devs = MediaCandidates(disks)
		}
		for _, dev := range devs {
			vol, ok := blockdev.ISOVolume(dev)
			if !ok {
				continue
			}
			if !slices.Contains(tried, dev) {
				tried = append(tried, dev)
			}
			if err := mountISO(dev, mnt); err != nil {
				fmt.Fprintf(log, "closure: mount %s: %v\n", dev, err)
				continue
			}
			if fi, err := os.Stat(filepath.Join(mnt, CacheDir, hash+".narinfo")); err == nil && fi.Mode().IsRegular() {
				return &Source{URL: "file://" + filepath.Join(mnt, CacheDir), Where: fmt.Sprintf("%s (iso9660 %s)", dev, vol), Key: key, Nix: opt.Nix, umount: mnt}, nil
			}
			if round == 0 {
				fmt.Fprintf(log, "closure: %s (iso9660 %s) has no %s\n", dev, vol, opt.Toplevel)
			}
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
		if opt.Devices != nil || !time.Now().Before(deadline) {
			break
		}
		if round == 0 {
			fmt.Fprintf(log, "closure: waiting up to %s for the boot medium to appear (USB disks are found late)\n", time.Until(deadline).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if opt.Server != "" {
		base := strings.TrimRight(opt.Server, "/") + "/" + CacheDir
		tried = append(tried, base)
		client := opt.Client
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		if err := httpHas(ctx, client, base+"/"+hash+".narinfo"); err == nil {
			return &Source{URL: base, Where: "server " + opt.Server, Key: key, Nix: opt.Nix}, nil
		} else {
			fmt.Fprintf(log, "closure: %v\n", err)
		}
	}
	if len(tried) == 0 {
		tried = []string{"no iso9660 medium among " + strings.Join(devs, " ")}
	}
	return nil, fmt.Errorf("%w: %s (looked at: %s)", ErrNotFound, opt.Toplevel, strings.Join(tried, ", "))
}

// MediaCandidates lists the block devices that may carry the media's cache:
// the USB image's NIXLOS-CACHE partitions first, then boot-medium disks
// (the ISO on a CD or a USB stick) and their partitions, then every other
// CD drive.
func MediaCandidates(disks []hw.Disk) []string {
	var first, boot, rest []string
	for _, d := range disks {
		for _, p := range d.Partitions {
			if p.PartName == CachePartName {
				first = append(first, p.Path)
			}
		}
		switch {
		case d.BootMedium:
			boot = append(boot, d.Path)
			for _, p := range d.Partitions {
				if p.PartName != CachePartName {
					boot = append(boot, p.Path)
				}
			}
		case d.Kind == hw.KindCDROM && d.SizeBytes > 0: // an empty drive has size 0
			rest = append(rest, d.Path)
		}
	}
	var out []string
	for _, p := range slices.Concat(first, boot, rest) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func mountISO(dev, mnt string) error {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	unix.Unmount(mnt, unix.MNT_DETACH) // a previous attempt's
	src := dev
	if fi, err := os.Stat(dev); err == nil && fi.Mode().IsRegular() {
		// An image file (tests): attach it to a loop device first.
		loop, err := attachLoop(dev)
		if err != nil {
			return err
		}
		src = loop
	}
	return unix.Mount(src, mnt, "iso9660", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, "")
}

// attachLoop attaches file read-only to a free loop device, auto-cleared
// when unmounted.
func attachLoop(file string) (string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", fmt.Errorf("loop: %w", err)
	}
	loop := fmt.Sprintf("/dev/loop%d", n)
	lf, err := os.OpenFile(loop, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer lf.Close()
	bf, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer bf.Close()
	cfg := unix.LoopConfig{Fd: uint32(bf.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	if err := unix.IoctlLoopConfigure(int(lf.Fd()), &cfg); err != nil {
		return "", fmt.Errorf("loop configure %s: %w", loop, err)
	}
	return loop, nil
}

func httpHas(ctx context.Context, client *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cache at %s: %w", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cache at %s: %s", u, resp.Status)
	}
	return nil
}

// CopyArgs are the nix arguments (without the binary) that copy the
// closures of storePaths from the cache into the store at root, trusting
// only s.Key (no key: only content-addressed paths, checked by hash).
func (s *Source) CopyArgs(root string, storePaths ...string) []string {
	args := append([]string{}, NixFlags...)
	args = append(args, "copy", "--from", s.URL)
	if root != "" && root != "/" {
		args = append(args, "--store", root)
	}
	trusted := ""
	if s.Key.Key != nil {
		trusted = s.Key.String()
	}
	args = append(args, "--option", "trusted-public-keys", trusted)
	return append(append(args,
		"--option", "require-sigs", "true",
		"--option", "sandbox", "false"),
		storePaths...)
}

// CopyInputs copies the flake's inputs (manifest inputs' store paths) from
// the cache into root's store, so that nix finds them there by the lock
// file's narHash and never fetches them: no network, and path: inputs
// that exist only on the machine mkiso ran on work. It has the shape of
// install.Options.CopyInputs.
func (s *Source) CopyInputs(paths []string) func(ctx context.Context, root string, log io.Writer) error {
	return func(ctx context.Context, root string, log io.Writer) error {
		if log == nil {
			log = io.Discard
		}
		nix := s.Nix
		if nix == "" {
			nix = "nix"
		}
		args := s.CopyArgs(root, paths...)
		fmt.Fprintf(log, "$ %s %s\n", nix, strings.Join(args, " "))
		start := time.Now()
		cmd := nixCommand(ctx, nix, args...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("copy the flake's inputs from %s: %w (see the log)", s.Where, err)
		}
		for _, p := range paths {
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				return fmt.Errorf("copy the flake's inputs from %s: %s not in %s afterwards: %w", s.Where, p, root, err)
			}
		}
		fmt.Fprintf(log, "copied %d flake inputs from %s in %s\n", len(paths), s.Where, time.Since(start).Round(time.Millisecond))
		return nil
	}
}

// Copy copies storePath's closure from the cache into ROOT's store
// (root/nix/store) with every signature checked against the manifest's
// key; a path signed by any other key (or none) fails the copy. It has the
// shape of install.Options.CopySystem.
func (s *Source) Copy(ctx context.Context, root, storePath string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	nix := s.Nix
	if nix == "" {
		nix = "nix"
	}
	args := s.CopyArgs(root, storePath)
	fmt.Fprintf(log, "$ %s %s\n", nix, strings.Join(args, " "))
	start := time.Now()
	cmd := nixCommand(ctx, nix, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("copy %s from %s: %w (see the log)", storePath, s.Where, err)
	}
	if _, err := os.Stat(filepath.Join(root, storePath)); err != nil {
		return fmt.Errorf("copy %s from %s: not in %s afterwards: %w", storePath, s.Where, root, err)
	}
	fmt.Fprintf(log, "copied %s from %s in %s\n", storePath, s.Where, time.Since(start).Round(time.Millisecond))
	return nil
}

// Close unmounts the medium (if Locate mounted one).
func (s *Source) Close() error {
	if s == nil || s.umount == "" {
		return nil
	}
	err := unix.Unmount(s.umount, unix.MNT_DETACH)
	s.umount = ""
	return err
}
