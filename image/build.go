package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// hostName is what a host name may look like on a kernel command line and in
// every boot loader config.
var hostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Build writes the formats of spec (all when formats is empty) into out and
// then out/SHA256SUMS over every file written.
func Build(spec Spec, out string, formats []Format) (Report, error) {
	var rep Report
	if len(formats) == 0 {
		formats = AllFormats
	}
	if err := spec.check(); err != nil {
		return rep, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return rep, fmt.Errorf("output dir: %w", err)
	}
	for _, f := range formats {
		start := time.Now()
		path, size, err := buildOne(spec, out, f)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", f, err)
		}
		rep.Outputs = append(rep.Outputs, Output{Format: f, Path: path, Size: size, Duration: time.Since(start)})
	}
	if err := WriteSums(out); err != nil {
		return rep, fmt.Errorf("%s: %w", SumsName, err)
	}
	return rep, nil
}

func buildOne(spec Spec, out string, f Format) (string, int64, error) {
	switch f {
	case FormatISO:
		p := filepath.Join(out, ISOName)
		n, err := BuildISO(spec, p)
		return p, n, err
	case FormatUSB:
		p := filepath.Join(out, USBName)
		n, err := BuildUSB(spec, p)
		return p, n, err
	case FormatPXE:
		p := filepath.Join(out, PXEDir)
		n, err := BuildPXE(spec, p)
		return p, n, err
	}
	return "", 0, fmt.Errorf("unknown format %q (want iso, usb or pxe)", f)
}

// ParseFormats parses a comma-separated format list ("iso,usb,pxe").
func ParseFormats(s string) ([]Format, error) {
	var out []Format
	for _, name := range strings.Split(s, ",") {
		f := Format(strings.TrimSpace(name))
		if f != FormatISO && f != FormatUSB && f != FormatPXE {
			return nil, fmt.Errorf("unknown format %q (want iso, usb or pxe)", name)
		}
		out = append(out, f)
	}
	return out, nil
}

// WriteSums writes dir/SHA256SUMS (sha256sum format, sorted paths) for every
// known output present in dir.
func WriteSums(dir string) error {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel != ISOName && rel != USBName && !strings.HasPrefix(rel, PXEDir+"/") {
			return nil
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return err
		}
		lines = append(lines, sum+"  "+rel)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] })
	return os.WriteFile(filepath.Join(dir, SumsName), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
