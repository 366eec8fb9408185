package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/pxe/wire"
)

// flowTarget plays a whole deploy: probe, detect, tmpfs, uploads, kexec,
// and after "kexec -e" it reports to the status server as the installer
// would. It records every command and its stdin.
type flowTarget struct {
	mu    sync.Mutex
	cmds  []string
	stdin map[int][]byte
	t     *testing.T
	final string // the state reported after kexec -e
}

func (f *flowTarget) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	var in []byte
	if stdin != nil {
		in, _ = io.ReadAll(stdin)
	}
	f.mu.Lock()
	f.cmds = append(f.cmds, cmd)
	f.stdin[len(f.cmds)-1] = in
	f.mu.Unlock()
	switch {
	case cmd == probeScript:
		io.WriteString(stdout, probeOutput(nil))
	case strings.Contains(cmd, "installer detect --json"):
		json.NewEncoder(stdout).Encode(hw.Report{Firmware: hw.UEFI, Memory: hw.Memory{TotalBytes: 2 << 30},
			Disks: []hw.Disk{{Name: "vda", Path: "/dev/vda", Kind: hw.KindDisk, SizeBytes: 8 << 30, Bus: "virtio"}},
			NICs:  []hw.NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", Up: true, Carrier: true}}})
	case strings.Contains(cmd, "kexec -e"):
		m := regexp.MustCompile(`nixlos\.server=http://10\.0\.2\.2:(\d+)`).FindStringSubmatch(strings.Join(f.cmds, "\n"))
		if m == nil {
			f.t.Errorf("no nixlos.server in the kexec command line")
			return nil
		}
		go func() {
			base := "http://127.0.0.1:" + m[1]
			for _, st := range []string{"installing", f.final} {
				msg := ""
				if st == "failed" {
					msg = "partition: disk busy | last log line"
				}
				if err := wire.ReportStatus(context.Background(), nil, base, wire.Status{MAC: "52:54:00:12:34:56", Host: "laptop", State: st, Message: msg}); err != nil {
					f.t.Errorf("report %s: %v", st, err)
				}
			}
		}()
	}
	return nil
}
func (f *flowTarget) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
}
func (f *flowTarget) Close() error { return nil }

// TestFlow runs a whole deploy against flowTarget: the steps in order,
// the installer's command line, and where the age key goes: only on the
// stdin of the kexec -l command (never in a command, never in the
// initrd upload), deleted by that command's exit trap.
func TestFlow(t *testing.T) {
	build := fakeBuild(t)
	// The build's installer answers plan and check (run on the workstation).
	bin := filepath.Join(t.TempDir(), "installer")
	os.WriteFile(bin, []byte("#!/bin/sh\ncase \"$1\" in plan) echo 'disk main: /dev/vda, 8 GiB, gpt table';; check) echo 'pre-flight passed';; esac\n"), 0o755)
	replaceInstaller(t, filepath.Join(build, "pxe", "initrd"), bin)
	k, _ := agekey.Generate()
	keyFile := filepath.Join(t.TempDir(), "age.key")
	agekey.Write(keyFile, k)
	secret := strings.TrimSpace(string(k.File()[bytes.LastIndex(k.File(), []byte("AGE-SECRET-KEY")):]))
	kx := filepath.Join(t.TempDir(), "kexec")
	os.WriteFile(kx, []byte("kexec"), 0o755)

	for _, final := range []string{"complete", "failed"} {
		t.Run(final, func(t *testing.T) {
			ft := &flowTarget{stdin: map[int][]byte{}, t: t, final: final}
			var out syncBuffer
			err := Run(context.Background(), Options{Target: "root@192.0.2.10", Host: "laptop", Build: build, AgeKey: keyFile, Yes: true,
				Listen: "127.0.0.1:0", KexecBinary: kx, Stdout: &out, Dial: func(context.Context, SSHConfig) (Target, error) { return ft, nil }})
			if final == "complete" && err != nil || final == "failed" && (err == nil || !strings.Contains(err.Error(), "partition: disk busy\nlast lines of the install log:\n  | last log line")) {
				t.Fatalf("%s: err %v\n%s", final, err, out.String())
			}
			var kexecCmd int = -1
			for i, c := range ft.cmds {
				if strings.Contains(c, secret) {
					t.Errorf("command %d holds the age key: %q", i, c)
				}
				if strings.Contains(c, "./kexec -l") {
					kexecCmd = i
				}
				if bytes.Contains(ft.stdin[i], []byte(secret)) && !strings.Contains(c, "./kexec -l") {
					t.Errorf("command %d got the age key on stdin: %q", i, c)
				}
			}
			if kexecCmd < 0 {
				t.Fatalf("no kexec -l:\n%q", ft.cmds)
			}
			kc := ft.cmds[kexecCmd]
			for _, w := range []string{"trap clean EXIT", "cat > ./key.cpio", `--initrd '\''./key.cpio ./initrd'\''`, "nixlos.host=laptop", "nixlos.auto=1",
				"ip=10.0.2.15::10.0.2.2:255.255.255.0:::off:10.0.2.3", "console=ttyS0,115200"} {
				if !strings.Contains(kc, w) {
					t.Errorf("kexec -l command lacks %q:\n%s", w, kc)
				}
			}
			if !bytes.Contains(ft.stdin[kexecCmd], []byte(secret)) {
				t.Errorf("the key did not arrive on kexec -l's stdin")
			}
			// Order: tmpfs, installer, detect, kexec, kernel, initrd, kexec -l, kexec -e.
			order := []string{"mount -t tmpfs", "installer detect", "/kexec &&", "/vmlinuz &&", "/initrd &&", "./kexec -l", "kexec -e"}
			j := 0
			for _, c := range ft.cmds {
				if j < len(order) && strings.Contains(c, order[j]) {
					j++
				}
			}
			if j != len(order) {
				t.Errorf("steps out of order (matched %d of %q):\n%s", j, order, strings.Join(ft.cmds[1:], "\n---\n"))
			}
		})
	}
}

// replaceInstaller rewrites the fake build's initrd with bin as bin/installer.
func replaceInstaller(t *testing.T, initrd, bin string) {
	t.Helper()
	data, _ := os.ReadFile(bin)
	var es []cpioEntry
	f, _ := os.Open(initrd)
	defer f.Close()
	cpio.Walk(f, func(e cpio.Entry, r io.Reader) error {
		d, _ := io.ReadAll(r)
		if e.Name == "bin/installer" {
			d = data
		}
		es = append(es, cpioEntry{name: e.Name, mode: e.Mode, data: d})
		return nil
	})
	if err := os.WriteFile(initrd, newc(es), 0o644); err != nil {
		t.Fatal(err)
	}
}
