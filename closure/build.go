package closure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
)

// NixFlags are the options every nix call here gets: flakes on, no binary
// caches (offline), no build users (root without the nixbld group).
var NixFlags = []string{
	"--extra-experimental-features", "nix-command flakes",
	"--option", "substituters", "",
	"--option", "build-users-group", "",
}

// DefaultCompression is the NAR compression of the caches Build writes:
// zstd unpacks several times faster than Nix's default xz on the
// installer's CPU, for files about a fifth larger.
const DefaultCompression = "zstd"

// BuildOptions say which toplevels to build and where the cache goes.
type BuildOptions struct {
	FlakeRef string   // flake reference (flake.Flake.Ref()), e.g. git+file:///src?dir=x
	Hosts    []string // nixosConfigurations to build
	Cache    string   // cache directory to write (created)
	Nix      string   // nix binary; "" = nix from PATH
	// KeyName names the signing key; "" = nixlos-<random>.
	KeyName string
	// Key signs the cache; nil = a new key (GenerateKey(KeyName)), which
	// is what a build wants. Tests pass one to look for it in the outputs.
	Key *SecretKey
	// Compression of the NARs; "" = DefaultCompression.
	Compression string
	// Log gets nix's build and copy output.
	Log io.Writer
}

// BuildResult is a written, signed cache.
type BuildResult struct {
	Cache     string             `json:"cache"`
	PublicKey string             `json:"publicKey"`
	Closures  map[string]Summary `json:"closures"` // per host
}

// ErrNoToplevel is returned (wrapped) by Build when a host has no
// config.system.build.toplevel: the flake's input, not a build failure.
var ErrNoToplevel = errors.New("a host has no config.system.build.toplevel")

// ToplevelAttr is the flake attribute of a host's system.
func ToplevelAttr(host string) string {
	return "nixosConfigurations." + nixAttr(host) + ".config.system.build.toplevel"
}

func nixAttr(name string) string {
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '\'') {
			return `"` + strings.ReplaceAll(name, `"`, `\"`) + `"`
		}
	}
	return name
}

// Build builds each host's toplevel with nix (offline), makes a signing key
// for this cache alone, copies the closures into opt.Cache signed with it,
// and forgets the secret key: it is never written anywhere but a private
// temporary file that is removed once the copy is done.
func Build(ctx context.Context, opt BuildOptions) (*BuildResult, error) {
	if len(opt.Hosts) == 0 {
		return nil, errors.New("closure: no hosts to build")
	}
	log := opt.Log
	if log == nil {
		log = io.Discard
	}
	args := []string{"build", "--no-link", "--json"}
	for _, h := range opt.Hosts {
		args = append(args, opt.FlakeRef+"#"+ToplevelAttr(h))
	}
	out, err := runNix(ctx, opt.Nix, log, nil, args...)
	if err != nil {
		if strings.Contains(err.Error(), "does not provide attribute") {
			return nil, fmt.Errorf("build the toplevels: %w: %w", ErrNoToplevel, err)
		}
		return nil, fmt.Errorf("build the toplevels: %w", err)
	}
	var built []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(out, &built); err != nil || len(built) != len(opt.Hosts) {
		return nil, fmt.Errorf("build the toplevels: unexpected nix output %q", out)
	}
	toplevels := map[string]string{}
	var paths []string
	for i, b := range built {
		p := b.Outputs["out"]
		if _, err := HashPart(p); err != nil {
			return nil, fmt.Errorf("host %s: %w", opt.Hosts[i], err)
		}
		toplevels[opt.Hosts[i]] = p
		paths = append(paths, p)
		fmt.Fprintf(log, "%s: %s\n", opt.Hosts[i], p)
	}
	key := opt.Key
	if key == nil {
		if key, err = GenerateKey(opt.KeyName); err != nil {
			return nil, err
		}
	}
	if err := Copy(ctx, opt, key, paths); err != nil {
		return nil, err
	}
	res := &BuildResult{Cache: opt.Cache, PublicKey: key.Public().String(), Closures: map[string]Summary{}}
	fsys := os.DirFS(opt.Cache)
	for host, p := range toplevels {
		s, err := Summarize(fsys, p, key.Public())
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", host, err)
		}
		if len(s.Missing) > 0 || !s.Signed {
			return nil, fmt.Errorf("host %s: the cache is incomplete or unsigned (missing %v)", host, s.Missing)
		}
		res.Closures[host] = s
	}
	return res, nil
}

// Copy copies the closures of paths from the local store into the cache
// directory opt.Cache, signing every path with key. nix reads the key from
// a memfd handed to it as fd 3 (/proc/self/fd/3): the secret never touches
// a filesystem, and nothing is left behind should mkiso be killed. Where
// memfd_create is missing, a private temporary file is used and removed.
// A nil key copies unsigned: only for content-addressed paths (a flake's
// inputs), which Nix accepts by their hash alone.
func Copy(ctx context.Context, opt BuildOptions, key *SecretKey, paths []string) error {
	if err := os.MkdirAll(opt.Cache, 0o755); err != nil {
		return err
	}
	comp := opt.Compression
	if comp == "" {
		comp = DefaultCompression
	}
	q := url.Values{"compression": {comp}}
	var extra []*os.File
	if key != nil {
		file := "/proc/self/fd/3"
		if mf, err := key.memfd(); err == nil {
			defer mf.Close()
			extra = []*os.File{mf}
		} else {
			f, remove, err := key.WriteTemp()
			if err != nil {
				return fmt.Errorf("signing key: %w", err)
			}
			defer remove()
			file = f
		}
		q.Set("secret-key", file)
	}
	to := "file://" + opt.Cache + "?" + q.Encode()
	log := opt.Log
	if log == nil {
		log = io.Discard
	}
	if _, err := runNix(ctx, opt.Nix, log, extra, append([]string{"copy", "--to", to}, paths...)...); err != nil {
		return fmt.Errorf("copy the closures into %s: %w", opt.Cache, err)
	}
	return nil
}

// runNix runs nix NixFlags args…, stderr to log, and returns stdout; extra
// files are the child's fd 3, 4, ….
func runNix(ctx context.Context, nix string, log io.Writer, extra []*os.File, args ...string) ([]byte, error) {
	if nix == "" {
		nix = "nix"
	}
	cmd := nixCommand(ctx, nix, append(append([]string{}, NixFlags...), args...)...)
	cmd.ExtraFiles = extra
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(log, &stderr)
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%w (install Nix: apt-get install nix-bin)", err)
		}
		return nil, fmt.Errorf("nix %s: %w: %s", args[0], err, lastLines(stderr.String(), 6))
	}
	return stdout.Bytes(), nil
}

// nixCommand is nix with args, HOME set to /tmp when unset or missing
// (the installer's environment).
func nixCommand(ctx context.Context, nix string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, nix, args...)
	cmd.Env = os.Environ()
	if h := os.Getenv("HOME"); h == "" || !exists(h) {
		cmd.Env = append(cmd.Env, "HOME=/tmp")
	}
	return cmd
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
