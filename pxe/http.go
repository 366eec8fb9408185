package pxe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Status is the body of POST /v1/status.
type Status struct {
	MAC      string `json:"mac"`
	Host     string `json:"host,omitempty"`
	State    string `json:"state"`
	Message  string `json:"message,omitempty"`
	Progress *int   `json:"progress,omitempty"` // 0–100
}

// ReportableStates are the states an installer may POST.
var ReportableStates = []string{StateBooting, StateInstalling, StateComplete, StateFailed}

// maxStatusBody bounds a status request body.
const maxStatusBody = 64 << 10

// DecodeStatus reads and validates a status report: mac must be a MAC,
// state one of ReportableStates, progress 0–100, message at most 1024 bytes.
// The returned MAC is canonical.
func DecodeStatus(r io.Reader) (Status, error) {
	var st Status
	dec := json.NewDecoder(io.LimitReader(r, maxStatusBody))
	if err := dec.Decode(&st); err != nil {
		return Status{}, fmt.Errorf("status body is not JSON: %w", err)
	}
	mac, err := CanonicalMAC(st.MAC)
	if err != nil {
		return Status{}, err
	}
	st.MAC = mac
	if !contains(ReportableStates, st.State) {
		return Status{}, fmt.Errorf("state %q is not one of %s", st.State, strings.Join(ReportableStates, ", "))
	}
	if st.Progress != nil && (*st.Progress < 0 || *st.Progress > 100) {
		return Status{}, fmt.Errorf("progress %d is not 0-100", *st.Progress)
	}
	if len(st.Message) > 1024 {
		st.Message = st.Message[:1024]
	}
	st.Message = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, st.Message)
	if len(st.Host) > 63 || (st.Host != "" && !hostRe.MatchString(st.Host)) {
		return Status{}, fmt.Errorf("host %q is not a valid host name", st.Host)
	}
	return st, nil
}

// QueryMAC returns the canonical MAC of the "mac" query parameter.
func QueryMAC(q url.Values) (string, error) {
	v := q.Get("mac")
	if v == "" {
		return "", errors.New("mac parameter missing")
	}
	return CanonicalMAC(v)
}

// Handler returns the HTTP handler: /boot.ipxe, bundle files, /v1/status, /v1/key.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.serveScript)
	mux.HandleFunc("POST /v1/status", s.serveStatus)
	mux.HandleFunc("GET /v1/key", s.serveKey)
	mux.HandleFunc("GET /v1/machine", s.serveMachine)
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
	mac, err := QueryMAC(r.URL.Query())
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
		return LocalBootScript(mac), StateLocalBoot, mc.Host, "installed: boot from local disk", nil
	}
	mc, known := s.reloadMap().Lookup(mac)
	if !known {
		if s.cfg.Unknown == UnknownIgnore {
			return "", "", "", "", nil
		}
		return InstallScript(base, s.cfg.Bundle.Cmdline, nil, ""), StateBooting, "", "unknown MAC: menu boot script sent", nil
	}
	tok, err := s.cfg.Tracker.IssueToken(mac)
	if err != nil {
		return "", "", "", "", err
	}
	return InstallScript(base, s.cfg.Bundle.Cmdline, &mc, tok), StateBooting, mc.Host, "boot script sent", nil
}

// KernelArgs is the nixlos part of the kernel command line for a machine
// (nil: the menu, only nixlos.server).
func KernelArgs(base string, mc *Machine, token string) []string {
	args := []string{"nixlos.server=" + base}
	if mc == nil {
		return args
	}
	args = append(args, "nixlos.host="+mc.Host, "nixlos.auto=1")
	args = append(args, DiskArgs(mc)...)
	args = append(args, KeepArgs(mc)...)
	if mc.After != "" {
		args = append(args, "nixlos.after="+mc.After)
	}
	if token != "" {
		args = append(args, "nixlos.token="+token)
	}
	return args
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
			s.cfg.Tracker.Record(mac, mc.Host, StateBooting, "initrd download", -1)
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	st, err := DecodeStatus(r.Body)
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
	mac, err := QueryMAC(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	refuse := func(host, why string) {
		s.cfg.Tracker.Record(mac, host, StateRefused, "key refused: "+why+" (from "+r.RemoteAddr+")", -1)
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
	s.cfg.Tracker.Record(mac, mc.Host, StateInstalling, "age key sent (token now used)", -1)
}

// MachineInfo is the reply of GET /v1/machine?mac=MAC: what the map says
// about a MAC, for an installer that did not get it on its command line.
type MachineInfo struct {
	MAC       string            `json:"mac"`
	Host      string            `json:"host"`
	Disk      string            `json:"disk,omitempty"`
	Disks     map[string]string `json:"disks,omitempty"` // per-disk form: layout disk name → device
	After     string            `json:"after,omitempty"`
	Auto      bool              `json:"auto"`      // install unattended (always true for a mapped MAC)
	Key       bool              `json:"key"`       // /v1/key may serve this MAC (with its boot token)
	Installed bool              `json:"installed"` // reported complete: normally boots from local disk
}

// maxMachineBody bounds a /v1/machine reply.
const maxMachineBody = 16 << 10

// DecodeMachineInfo reads and validates a /v1/machine reply the way the
// installer must: a canonical MAC, a valid host, disk, disks and after as in the map.
func DecodeMachineInfo(r io.Reader) (MachineInfo, error) {
	var mi MachineInfo
	if err := json.NewDecoder(io.LimitReader(r, maxMachineBody)).Decode(&mi); err != nil {
		return MachineInfo{}, fmt.Errorf("machine reply is not JSON: %w", err)
	}
	mac, err := CanonicalMAC(mi.MAC)
	if err != nil {
		return MachineInfo{}, err
	}
	mi.MAC = mac
	if !hostRe.MatchString(mi.Host) {
		return MachineInfo{}, fmt.Errorf("host %q is not a valid host name", mi.Host)
	}
	if mi.Disk != "" {
		if err := CheckDiskDev(mi.Disk); err != nil {
			return MachineInfo{}, fmt.Errorf("disk %w", err)
		}
	}
	if err := CheckDisks(mi.Disks); err != nil {
		return MachineInfo{}, err
	}
	if mi.After != "" && !contains(ValidAfter, mi.After) {
		return MachineInfo{}, fmt.Errorf("after %q must be one of %s", mi.After, strings.Join(ValidAfter, ", "))
	}
	return mi, nil
}

func (s *Server) serveMachine(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	mac, err := QueryMAC(r.URL.Query())
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
	json.NewEncoder(w).Encode(MachineInfo{MAC: mac, Host: mc.Host, Disk: mc.Disk, Disks: mc.Disks, After: mc.After, Auto: true,
		Key: mc.Key && s.cfg.AgeKey != "", Installed: s.cfg.Tracker.Installed(mac)})
}
