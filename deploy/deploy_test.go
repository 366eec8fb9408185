package deploy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/imagepath"
	"github.com/nixlos/nixlos/pxe/wire"
)

// fakeBuild writes a PXE bundle whose initrd holds a manifest with host
// laptop (no closure, no secrets) and a stand-in installer.
func fakeBuild(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out", "pxe")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := `{"version":1,"flake":{"dir":"/etc/nixlos/flake"},"hosts":{"laptop":{"system":"x86_64-linux",
	  "disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{}}}}},"ageKeyFile":"/var/lib/sops-nix/key.txt"}}}`
	initrd := newc([]cpioEntry{{name: "etc", mode: 0o40755}, {name: "etc/nixlos", mode: 0o40755},
		{name: imagepath.Manifest, mode: 0o100644, data: []byte(manifest)},
		{name: "bin", mode: 0o40755}, {name: "bin/installer", mode: 0o100755, data: []byte("#!/bin/sh\nexit 3\n")}})
	for name, data := range map[string][]byte{"vmlinuz": []byte("kernel"), "initrd": initrd, "undionly.kpxe": nil, "ipxe.efi": nil} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Dir(dir)
}

// fakeTarget answers the probe with canned output and records every
// other command; those fail (the table tests must stop before them).
type fakeTarget struct {
	probe string
	cmds  []string
}

func (f *fakeTarget) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if cmd == probeScript {
		io.WriteString(stdout, f.probe)
		return nil
	}
	f.cmds = append(f.cmds, cmd)
	return &ExitError{Code: 1}
}
func (f *fakeTarget) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
}
func (f *fakeTarget) Close() error { return nil }

// probeOutput is what the probe prints on a healthy 2 GiB machine, with
// sections replaced by over (name → body).
func probeOutput(over map[string]string) string {
	sec := []struct{ name, body string }{
		{"uid", "0"}, {"sudo", ""}, {"conn", "10.0.2.2 51234 10.0.2.15 22"}, {"uname", "x86_64\n6.1.0-57-amd64"},
		{"meminfo", "MemTotal:        2031616 kB\nMemFree:         1800000 kB\nMemAvailable:    1900000 kB"},
		{"kexec_load_disabled", "0"}, {"kexec_loaded", "yes"}, {"lockdown", "[none] integrity confidentiality"},
		{"route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
			"eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0"},
		{"resolv", "# generated\nnameserver 10.0.2.3\nsearch example"}, {"resolved", ""},
		{"cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/vda1 console=tty0 console=ttyS0,115200"},
		{"macs", "eth0 52:54:00:12:34:56\nlo 00:00:00:00:00:00"}, {"run", "yes"},
	}
	var b strings.Builder
	for _, s := range sec {
		body := s.body
		if v, ok := over[s.name]; ok {
			body = v
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", s.name, body)
	}
	return b.String()
}

// TestRefusals: each bad target is refused with exit 2 and a message
// naming the problem, after the read-only probe and before anything else.
func TestRefusals(t *testing.T) {
	build := fakeBuild(t)
	for _, tc := range []struct {
		name string
		over map[string]string
		want string // in the error
	}{
		{"not root, no sudo", map[string]string{"uid": "1000"}, "not root (uid 1000) and sudo -n does not work"},
		{"no kexec in the kernel", map[string]string{"kexec_loaded": ""}, "no kexec support (/sys/kernel/kexec_loaded is missing)"},
		{"kexec disabled", map[string]string{"kexec_load_disabled": "1"}, "kexec is disabled"},
		{"locked down", map[string]string{"lockdown": "none [integrity] confidentiality"}, "locked down (integrity)"},
		{"too little RAM", map[string]string{"meminfo": "MemTotal: 1015808 kB\nMemAvailable: 900000 kB"}, "it has 992.0 MiB of RAM; the installer runs from RAM and building the system on the machine needs at least 1.5 GiB"},
		{"too little free RAM", map[string]string{"meminfo": "MemTotal: 4031616 kB\nMemAvailable: 60000 kB"}, "of RAM is free; staging the installer"},
		{"not x86_64", map[string]string{"uname": "aarch64\n6.1.0"}, "the machine is aarch64"},
		{"no POSIX shell", map[string]string{"uid": "x"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &fakeTarget{probe: probeOutput(tc.over)}
			if tc.name == "no POSIX shell" {
				ft.probe = "fish: Unknown command: s\n"
				tc.want = "did not run the probe"
			}
			var out bytes.Buffer
			err := Run(context.Background(), Options{Target: "root@192.0.2.10", Host: "laptop", Build: build, Stdout: &out, Yes: true,
				Dial: func(context.Context, SSHConfig) (Target, error) { return ft, nil }})
			if errs.Code(err) != 2 || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("exit %d, err %v; want exit 2 with %q\n%s", errs.Code(err), err, tc.want, out.String())
			}
			if len(ft.cmds) != 0 {
				t.Fatalf("the target was changed after the refusal: %q", ft.cmds)
			}
		})
	}
}

// TestSudoUser: a user with passwordless sudo passes, and every command
// after the probe runs through sudo -n.
func TestSudoUser(t *testing.T) {
	ft := &fakeTarget{probe: probeOutput(map[string]string{"uid": "1000", "sudo": "ok"})}
	err := Run(context.Background(), Options{Target: "admin@192.0.2.10", Host: "laptop", Build: fakeBuild(t), Stdout: io.Discard, Yes: true,
		Dial: func(context.Context, SSHConfig) (Target, error) { return ft, nil }})
	if err == nil || len(ft.cmds) == 0 {
		t.Fatalf("err %v, cmds %q: want the tmpfs mount attempted (and failing on the fake)", err, ft.cmds)
	}
	for _, c := range ft.cmds {
		if !strings.HasPrefix(c, "sudo -n ") {
			t.Errorf("command without sudo: %q", c)
		}
	}
	if !strings.Contains(ft.cmds[0], "mount -t tmpfs -o mode=0700") {
		t.Errorf("first change is not the private tmpfs: %q", ft.cmds[0])
	}
}

// TestLocalInput: bad input found before connecting (exit 2, no dial).
func TestLocalInput(t *testing.T) {
	build := fakeBuild(t)
	key := filepath.Join(t.TempDir(), "age.key")
	os.WriteFile(key, []byte("not a key\n"), 0o600)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no host", Options{Target: "h", Build: build}, "--host: missing"},
		{"unknown host", Options{Target: "h", Host: "server", Build: build}, "not a host of the build (fix: one of: laptop"},
		{"no build", Options{Target: "h", Host: "laptop"}, "no build directory"},
		{"not a build", Options{Target: "h", Host: "laptop", Build: t.TempDir()}, "no vmlinuz"},
		{"bad disk", Options{Target: "h", Host: "laptop", Build: build, Disks: []string{"main=vda"}}, "nixlos.disk.main=vda"},
		{"bad ip", Options{Target: "h", Host: "laptop", Build: build, IP: "10.0.0.300::"}, "ip=10.0.0.300::"},
		{"bad age key", Options{Target: "h", Host: "laptop", Build: build, AgeKey: key}, key},
		{"bad target", Options{Target: "root@", Host: "laptop", Build: build}, "not a target"},
		{"bad port", Options{Target: "h:99999", Host: "laptop", Build: build}, "not a port number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dialed := false
			tc.o.Stdout = io.Discard
			tc.o.Dial = func(context.Context, SSHConfig) (Target, error) { dialed = true; return nil, errors.New("dialed") }
			err := Run(context.Background(), tc.o)
			if errs.Code(err) != 2 || !strings.Contains(fmt.Sprint(err), tc.want) || dialed {
				t.Fatalf("exit %d (dialed %v): %v; want exit 2 with %q", errs.Code(err), dialed, err, tc.want)
			}
		})
	}
}

// sshServer runs an in-process SSH server that accepts key and echoes
// exec requests; it returns its address and host key.
func sshServer(t *testing.T, accept ssh.PublicKey) (string, ssh.PublicKey) {
	t.Helper()
	_, hpriv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(hpriv)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if accept != nil && bytes.Equal(k.Marshal(), accept.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("no")
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					c.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					// A session that answers "exec CMD" with CMD on stdout and
					// "err" on stderr, then exit status 0.
					ch, creqs, err := nc.Accept()
					if err != nil {
						continue
					}
					go func() {
						for req := range creqs {
							if req.Type != "exec" {
								req.Reply(false, nil)
								continue
							}
							req.Reply(true, nil)
							var p struct{ Cmd string }
							ssh.Unmarshal(req.Payload, &p)
							ch.Write([]byte(p.Cmd))
							ch.Stderr().Write([]byte("err"))
							ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
							ch.Close()
						}
					}()
				}
				sc.Close()
			}()
		}
	}()
	return ln.Addr().String(), signer.PublicKey()
}

// TestDialSSH: unreachable, unknown host key, changed host key and a
// refused login are exit 2 with the reason; a known key and an accepted
// login connect.
func TestDialSSH(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	keyFile := filepath.Join(dir, "id")
	os.WriteFile(keyFile, pem.EncodeToMemory(blk), 0o600)
	cpub, _ := ssh.NewPublicKey(pub)
	addr, hostKey := sshServer(t, cpub)
	host, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	known := func(k ssh.PublicKey) string {
		f := filepath.Join(t.TempDir(), "known_hosts")
		line := ""
		if k != nil {
			line = fmt.Sprintf("[%s]:%d %s", host, p, ssh.MarshalAuthorizedKey(k))
		}
		os.WriteFile(f, []byte(line), 0o600)
		return f
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(otherPriv)
	closed := freePort(t)
	for _, tc := range []struct {
		name string
		c    SSHConfig
		want string // "" = connects
	}{
		{"connects", SSHConfig{User: "root", Host: host, Port: p, Key: keyFile, KnownHosts: known(hostKey)}, ""},
		{"unreachable", SSHConfig{User: "root", Host: "127.0.0.1", Port: closed, Key: keyFile, KnownHosts: known(hostKey)}, "cannot connect"},
		{"unknown host key", SSHConfig{User: "root", Host: host, Port: p, Key: keyFile, KnownHosts: known(nil)}, "is not in"},
		{"changed host key", SSHConfig{User: "root", Host: host, Port: p, Key: keyFile, KnownHosts: known(otherSigner.PublicKey())}, "HOST KEY MISMATCH"},
		{"login refused", SSHConfig{User: "root", Host: host, Port: p, Key: writeOtherKey(t), KnownHosts: known(hostKey)}, "login refused"},
		{"no known_hosts file", SSHConfig{User: "root", Host: host, Port: p, Key: keyFile, KnownHosts: filepath.Join(dir, "none")}, "cannot read known hosts"},
		{"insecure", SSHConfig{User: "root", Host: host, Port: p, Key: keyFile, InsecureHostKey: true, Log: io.Discard}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tg, err := DialSSH(ctx, tc.c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer tg.Close()
				// stdout and stderr into one buffer lose nothing (x/crypto
				// copies them concurrently).
				for i := 0; i < 30; i++ {
					var b bytes.Buffer
					if err := tg.Run(ctx, "echo hello", nil, &b, &b); err != nil || len(b.String()) != len("echo hello")+3 {
						t.Fatalf("run %d: %v, output %q", i, err, b.String())
					}
				}
				return
			}
			if errs.Code(err) != 2 || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("exit %d: %v; want exit 2 with %q", errs.Code(err), err, tc.want)
			}
		})
	}
}

func writeOtherKey(t *testing.T) string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	f := filepath.Join(t.TempDir(), "other")
	os.WriteFile(f, pem.EncodeToMemory(blk), 0o600)
	return f
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in         string
		port       int
		user, host string
		p          int
		bad        bool
	}{
		{"192.0.2.10", 22, "root", "192.0.2.10", 22, false},
		{"admin@host.example", 2222, "admin", "host.example", 2222, false},
		{"root@127.0.0.1:2200", 22, "root", "127.0.0.1", 2200, false},
		{"root@[2001:db8::1]:22", 22, "root", "2001:db8::1", 22, false},
		{"@h", 22, "", "", 0, true},
		{"a b", 22, "", "", 0, true},
		{"h", 0, "", "", 0, true},
	} {
		u, h, p, err := ParseTarget(tc.in, tc.port)
		if tc.bad {
			if errs.Code(err) != 2 {
				t.Errorf("%q: want bad input, got %v", tc.in, err)
			}
			continue
		}
		if err != nil || u != tc.user || h != tc.host || p != tc.p {
			t.Errorf("%q: got %q %q %d %v", tc.in, u, h, p, err)
		}
	}
}

func TestNetwork(t *testing.T) {
	f, err := ParseFacts(probeOutput(nil))
	if err != nil {
		t.Fatal(err)
	}
	one := []hw.NIC{{Name: "eth0", MAC: "52:54:00:12:34:56"}, {Name: "lo", Virtual: true}}
	two := append(one, hw.NIC{Name: "eth1"})
	for _, tc := range []struct {
		name  string
		f     Facts
		nics  []hw.NIC
		want  string
		iface string
		warn  bool
	}{
		{"one NIC: device left open", f, one, "10.0.2.15::10.0.2.2:255.255.255.0:::off:10.0.2.3", "eth0", false},
		{"two NICs: the SSH one", f, two, "10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3", "eth0", false},
		{"predictable name warned", renamed(f, "ens3"), append(one, hw.NIC{Name: "ens4"}), "10.0.2.15::10.0.2.2:255.255.255.0::ens3:off:10.0.2.3", "ens3", true},
		{"no DNS", func() Facts { g := f; g.DNS = nil; return g }(), one, "10.0.2.15::10.0.2.2:255.255.255.0:::off", "eth0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, iface, err := tc.f.Network(tc.nics)
			var w warning
			if err != nil && !(tc.warn && errors.As(err, &w)) {
				t.Fatal(err)
			}
			if n.String() != tc.want || iface != tc.iface {
				t.Fatalf("ip=%s on %s, want ip=%s on %s", n.String(), iface, tc.want, tc.iface)
			}
		})
	}
	noConn := f
	noConn.ServerIP = netip.Addr{}
	if _, _, err := noConn.Network(one); errs.Code(err) != 2 || !strings.Contains(err.Error(), "--ip") {
		t.Fatalf("no SSH_CONNECTION: %v", err)
	}
	offLink := f
	offLink.ServerIP = netip.MustParseAddr("192.0.2.7")
	if _, _, err := offLink.Network(one); errs.Code(err) != 2 {
		t.Fatalf("address on no route: %v", err)
	}
}

func renamed(f Facts, name string) Facts {
	g := f
	g.Routes = nil
	for _, r := range f.Routes {
		r.Iface = name
		g.Routes = append(g.Routes, r)
	}
	return g
}

func TestParseFacts(t *testing.T) {
	f, err := ParseFacts(probeOutput(map[string]string{"resolv": "nameserver 127.0.0.53", "resolved": "nameserver 192.0.2.53\nnameserver 2001:db8::53"}))
	if err != nil {
		t.Fatal(err)
	}
	if f.UID != 0 || f.MemTotal != 2031616<<10 || f.MemAvailable != 1900000<<10 || !f.KexecSupported || f.KexecDisabled || f.Lockdown != "none" ||
		f.ClientIP.String() != "10.0.2.2" || f.ServerIP.String() != "10.0.2.15" || f.Arch != "x86_64" || !f.HasRun ||
		fmt.Sprint(f.DNS) != "[192.0.2.53]" || fmt.Sprint(f.Consoles) != "[tty0 ttyS0,115200]" || f.MACs["eth0"] != "52:54:00:12:34:56" {
		t.Fatalf("%+v", f)
	}
}

// FuzzParseFacts: any probe output parses without panicking, and the
// network derived from it renders as an ip= the installer accepts.
func FuzzParseFacts(f *testing.F) {
	f.Add(probeOutput(nil))
	f.Add(probeOutput(map[string]string{"route": "Iface Destination\nx 0 0 0 0 0 0 0", "conn": "::1 1 ::1 2"}))
	f.Add("--- uid\n0\n--- conn\n1.2.3.4 1 5.6.7.8 22\n--- route\nh\ne 00000000 01020304 0 0 0 0 00000000\ne 00080605 00000000 0 0 0 0 00F0FFFF\n")
	f.Fuzz(func(t *testing.T, s string) {
		fa, err := ParseFacts(s)
		if err != nil {
			return
		}
		n, _, err := fa.Network(nil)
		if err != nil {
			return
		}
		if n.Address.Bits() <= 0 || !n.Address.Contains(fa.ServerIP) {
			t.Fatalf("address %s does not hold %s", n.Address, fa.ServerIP)
		}
	})
}

func TestKeyArchive(t *testing.T) {
	key := []byte("# created: now\nAGE-SECRET-KEY-1TEST\n")
	a := KeyArchive(key)
	if len(a)%512 != 0 {
		t.Fatalf("length %d is not a multiple of 512", len(a))
	}
	found := false
	err := cpio.Walk(bytes.NewReader(append(a, newc([]cpioEntry{{name: "x", mode: 0o100644, data: []byte("y")}})...)), func(e cpio.Entry, r io.Reader) error {
		if e.Name == imagepath.AgeKey {
			d, _ := io.ReadAll(r)
			found = bytes.Equal(d, key) && e.Mode == 0o100600 && e.UID == 0
		}
		return nil
	})
	if err != nil || !found {
		t.Fatalf("key not found intact with mode 0600: %v", err)
	}
}

func TestConfirm(t *testing.T) {
	for _, tc := range []struct {
		name     string
		o        Options
		wantExit int
	}{
		{"yes", Options{Yes: true}, 0},
		{"no terminal", Options{Stdin: strings.NewReader("laptop\n")}, 2},
		{"typed", Options{Stdin: strings.NewReader("laptop\n"), Terminal: true}, 0},
		{"mistyped", Options{Stdin: strings.NewReader("latop\n"), Terminal: true}, 2},
	} {
		tc.o.Host, tc.o.Target = "laptop", "root@h"
		r := &run{o: tc.o, out: io.Discard}
		if got := errs.Code(r.confirm()); got != tc.wantExit {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.wantExit)
		}
	}
}

// TestStatusChannel: the status server deploy starts takes the installer's
// reports (wire.ReportStatus, as the installer sends them) and follow ends
// on complete (nil), failed (exit 1, reason and log lines) or silence.
func TestStatusChannel(t *testing.T) {
	build := fakeBuild(t)
	bi, err := readBuild(build)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ParseFacts(probeOutput(nil))
	for _, tc := range []struct {
		name    string
		reports []wire.Status
		exit    int
		want    []string
	}{
		{"complete", []wire.Status{{State: "installing"}, {State: "complete"}}, 0, []string{"installing: -", "install complete host=laptop"}},
		{"failed", []wire.Status{{State: "installing"}, {State: "failed", Message: "partition /dev/vda: busy | log line 1 | log line 2"}}, 1,
			[]string{"install failed on root@h: partition /dev/vda: busy", "  | log line 1\n  | log line 2"}},
		{"silence", nil, 1, []string{"no report from the installer within"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			r := &run{o: Options{Host: "laptop", Target: "root@h", ReportTimeout: 2 * time.Second, Timeout: time.Minute}, out: &out, bi: bi, f: f,
				t: &fakeTarget{}, mac: "52:54:00:12:34:56", cmdline: bootcfg.Cmdline{After: bootcfg.AfterReboot}}
			r.o.Listen = "127.0.0.1:0"
			st, base, err := r.startServer()
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if !strings.HasPrefix(base, "http://10.0.2.2:") {
				t.Fatalf("base %s: want the workstation as the target sees it", base)
			}
			local := fmt.Sprintf("http://127.0.0.1:%d", st.srv.HTTPAddr.Port)
			go func() {
				for _, s := range tc.reports {
					s.MAC, s.Host = "52:54:00:12:34:56", "laptop"
					if err := wire.ReportStatus(context.Background(), nil, local, s); err != nil {
						t.Errorf("report: %v", err)
					}
				}
			}()
			err = r.follow(context.Background(), st)
			got := out.String() + fmt.Sprint(err)
			if errs.Code(err) != tc.exit {
				t.Fatalf("exit %d: %v\n%s", errs.Code(err), err, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
		})
	}
}
