package pxe

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/pxe/wire"
)

// Handler returns the HTTP handler: /boot.ipxe, bundle files, /v1/status, /v1/key.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.serveScript)
	mux.HandleFunc("POST /v1/status", s.serveStatus)
	mux.HandleFunc("GET /v1/key", s.serveKey)
	mux.HandleFunc("GET /v1/machine", s.serveMachine)
	mux.HandleFunc("POST /v1/discover", s.serveDiscover)
	mux.HandleFunc("GET /{file}", s.serveFile)
	mux.HandleFunc("GET /"+CacheDir+"/{path...}", s.serveCache)
	return mux
}

// CacheDir is the bundle's binary cache directory (mkiso build --closure),
// served read-only at /nix-cache/ for the installer's nix copy.
const CacheDir = "nix-cache"

// serveCache serves a file of the bundle's binary cache: nix-cache-info,
// HASH.narinfo or nar/FILE. Nothing outside CacheDir is reachable.
func (s *Server) serveCache(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("path")
	if name == "" || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	f, fi, ok := openRegular(filepath.Join(s.cfg.Bundle.Dir, CacheDir), name)
	if !ok {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	switch {
	case strings.HasSuffix(name, ".narinfo"):
		w.Header().Set("Content-Type", "text/x-nix-narinfo")
	case name == "nix-cache-info":
		w.Header().Set("Content-Type", "text/x-nix-cache-info")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	http.ServeContent(w, r, path.Base(name), fi.ModTime(), f)
}

// openRegular opens name below root (never outside it: os.OpenInRoot) when
// it is a regular file; ok is false otherwise, and nothing is left open.
func openRegular(root, name string) (f *os.File, fi os.FileInfo, ok bool) {
	f, err := os.OpenInRoot(root, name)
	if err != nil {
		return nil, nil, false
	}
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, false
	}
	return f, fi, true
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Query().Get("mac") == "" {
		// Ask iPXE for its MAC, then come back.
		fmt.Fprintf(w, "#!ipxe\nchain %s/boot.ipxe?mac=${net0/mac}\n", s.baseFor(r))
		return
	}
	mac, err := wire.QueryMAC(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	script, state, host, msg, err := s.Script(mac, s.baseFor(r))
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		s.logf("boot.ipxe %s: %v", mac, err)
		return
	}
	if script == "" {
		http.Error(w, "unknown MAC", http.StatusNotFound)
		return
	}
	s.rememberIP(r, mac)
	s.cfg.Tracker.Record(mac, host, state, msg, -1)
	io.WriteString(w, script)
}

// baseFor is the server's base URL as this request reached it.
func (s *Server) baseFor(r *http.Request) string {
	if s.httpURL != "" {
		return s.httpURL
	}
	return "http://" + r.Host
}

// Script renders the iPXE script for mac: a local-disk boot when it is
// installed, the install for a mapped MAC, the menu for an unknown one
// (or "" under --unknown=ignore). It issues a fresh boot token for mapped MACs.
func (s *Server) Script(mac, base string) (script, state, host, msg string, err error) {
	if s.cfg.Tracker.Installed(mac) {
		mc, _ := s.reloadMap().Lookup(mac)
		return LocalBootScript(mac), wire.StateLocalBoot, mc.Host, "installed: boot from local disk", nil
	}
	mc, known := s.reloadMap().Lookup(mac)
	if known && s.cfg.Discover {
		if why := s.notInBundle(mc.Host); why != "" {
			return DiscoverScript(base, s.cfg.Bundle.Cmdline), wire.StateBooting, mc.Host, "discovery boot script sent: " + why, nil
		}
	}
	if !known {
		if s.cfg.Discover {
			return DiscoverScript(base, s.cfg.Bundle.Cmdline), wire.StateBooting, "", "unknown MAC: discovery boot script sent", nil
		}
		if s.cfg.Unknown == UnknownIgnore {
			return "", "", "", "", nil
		}
		return InstallScript(base, s.cfg.Bundle.Cmdline, nil, ""), wire.StateBooting, "", "unknown MAC: menu boot script sent", nil
	}
	tok, err := s.cfg.Tracker.IssueToken(mac)
	if err != nil {
		return "", "", "", "", err
	}
	return InstallScript(base, s.cfg.Bundle.Cmdline, &mc, tok), wire.StateBooting, mc.Host, "boot script sent", nil
}

// KernelArgs is the nixlos part of the kernel command line for a machine
// (nil: the menu, only nixlos.server).
func KernelArgs(base string, mc *Machine, token string) []string {
	c := mc.Cmdline()
	c.Server, c.Token = base, token
	return c.Args()
}

// DiscoverScript is the iPXE script booting the installer in discovery
// mode (nixlos.discover=1), for an unknown MAC under mkiso serve --discover.
func DiscoverScript(base, cmdline string) string {
	parts := []string{"kernel", base + "/" + KernelFile, "initrd=" + InitrdFile}
	if cmdline != "" {
		parts = append(parts, cmdline)
	}
	parts = append(parts, bootcfg.Cmdline{Server: base, Discover: true}.Args()...)
	return "#!ipxe\n" + strings.Join(parts, " ") + "\n" +
		"initrd --name " + InitrdFile + " " + base + "/" + InitrdFile + "\n" +
		"boot\n"
}

// InstallScript is the iPXE script booting the installer.
func InstallScript(base, cmdline string, mc *Machine, token string) string {
	parts := []string{"kernel", base + "/" + KernelFile, "initrd=" + InitrdFile}
	if cmdline != "" {
		parts = append(parts, cmdline)
	}
	parts = append(parts, KernelArgs(base, mc, token)...)
	return "#!ipxe\n" + strings.Join(parts, " ") + "\n" +
		"initrd --name " + InitrdFile + " " + base + "/" + InitrdFile + "\n" +
		"boot\n"
}

// LocalBootScript sends an installed machine to its first local disk.
// BIOS: sanboot hands drive 0x80 to the firmware (its MBR boot code).
// UEFI: iPXE cannot boot a local disk itself, and returning to the firmware
// (exit) hangs OVMF with the Debian iPXE, so it chains LocalEFIFile from
// the server (relative to the script's URL), a GRUB image that starts the
// disk's fallback loader \EFI\BOOT\BOOTX64.EFI. Anything that fails exits
// with an error, so the firmware tries its next boot option.
func LocalBootScript(mac string) string {
	return "#!ipxe\necho nixlos: " + mac + " is installed, booting from local disk\n" +
		"iseq ${platform} efi && goto efi ||\n" +
		"sanboot --no-describe --drive 0x80 || exit 1\n" +
		":efi\n" +
		"chain --autofree " + LocalEFIFile + " || exit 1\n"
}

func (s *Server) rememberIP(r *http.Request, mac string) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.ipMAC == nil {
		s.ipMAC = map[string]string{}
	}
	if len(s.ipMAC) > 4096 {
		clear(s.ipMAC)
	}
	s.ipMAC[host] = mac
	s.mu.Unlock()
}

func (s *Server) macForIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ipMAC[host]
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name != path.Base(name) || name == "." || name == ".." {
		http.NotFound(w, r)
		return
	}
	f, fi, ok := openRegular(s.cfg.Bundle.Dir, name)
	if !ok {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	if name == InitrdFile && r.Header.Get("Range") == "" {
		if mac := s.macForIP(r); mac != "" {
			mc, _ := s.machineMap().Lookup(mac)
			s.cfg.Tracker.Record(mac, mc.Host, wire.StateBooting, "initrd download", -1)
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	st, err := wire.DecodeStatus(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	host := st.Host
	if mc, ok := s.machineMap().Lookup(st.MAC); ok {
		host = mc.Host // the map decides, not the client
	}
	p := -1
	if st.Progress != nil {
		p = *st.Progress
	}
	s.cfg.Tracker.Record(st.MAC, host, st.State, st.Message, p)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveKey(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	mac, err := wire.QueryMAC(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	refuse := func(host, why string) {
		s.cfg.Tracker.Record(mac, host, wire.StateRefused, "key refused: "+why+" (from "+r.RemoteAddr+")", -1)
		http.Error(w, "key refused: "+why, http.StatusForbidden)
	}
	if s.cfg.AgeKey == "" {
		http.Error(w, "this server has no age key", http.StatusNotFound)
		return
	}
	mc, ok := s.reloadMap().Lookup(mac)
	if !ok {
		refuse("", "MAC not in the map")
		return
	}
	if !mc.Key {
		refuse(mc.Host, "key not enabled for this host (set key = true in the map)")
		return
	}
	if err := s.cfg.Tracker.UseToken(mac, q.Get("token")); err != nil {
		refuse(mc.Host, err.Error())
		return
	}
	key, err := os.ReadFile(s.cfg.AgeKey)
	if err != nil {
		s.logf("key for %s: cannot read the age key file", mac)
		http.Error(w, "cannot read the key file", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(key)
	clear(key)
	s.cfg.Tracker.Record(mac, mc.Host, wire.StateInstalling, "age key sent (token now used)", -1)
}

func (s *Server) serveMachine(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	mac, err := wire.QueryMAC(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	mc, ok := s.reloadMap().Lookup(mac)
	if !ok {
		http.Error(w, "MAC not in the map", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(wire.MachineInfo{MAC: mac, Host: mc.Host, Disk: mc.Disk, Disks: mc.Disks, After: mc.After, Auto: true,
		Key: mc.Key && s.cfg.AgeKey != "", Installed: s.cfg.Tracker.Installed(mac), Waiting: s.notInBundle(mc.Host)})
}

// notInBundle says why host cannot be installed from the served bundle
// (its initrd's manifest lacks it), or "" when it can, when discovery is
// off, or when the bundle's hosts cannot be read (a bundle not made by mkiso). The hosts are read again
// when the initrd changes (a rebuild while the server runs).
func (s *Server) notInBundle(host string) string {
	if !s.cfg.Discover {
		return ""
	}
	hosts := s.bundleHosts()
	if hosts == nil {
		return ""
	}
	if _, ok := hosts[host]; ok {
		return ""
	}
	return "host " + host + " is not in the served bundle yet (fix: git add its files, then mkiso build FLAKE --format pxe --out " + filepath.Dir(s.cfg.Bundle.Dir) + ")"
}

func (s *Server) bundleHosts() map[string][]string {
	fi, err := os.Stat(filepath.Join(s.cfg.Bundle.Dir, InitrdFile))
	if err != nil {
		return nil
	}
	key := fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	s.mu.Lock()
	defer s.mu.Unlock()
	if key != s.hostsKey {
		s.hosts, _ = s.cfg.Bundle.Hosts() // nil on error: not checked
		s.hostsKey = key
	}
	return s.hosts
}
