package pxe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pack.ag/tftp"
)

// rrq builds a TFTP read request with options.
func rrq(name, mode string, opts ...string) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 1})
	b.WriteString(name)
	b.WriteByte(0)
	b.WriteString(mode)
	b.WriteByte(0)
	for _, o := range opts {
		b.WriteString(o)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// rawTFTP sends pkt from a fresh socket and returns the first datagram back.
func rawTFTP(t testing.TB, addr *net.UDPAddr, pkt []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDP(pkt, addr); err != nil {
		t.Fatal(err)
	}
	if wait <= 0 {
		return nil
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 70000)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	// Be polite: tell the transfer we are gone.
	c.WriteToUDP([]byte{0, 5, 0, 0, 'b', 'y', 'e', 0}, from)
	return buf[:n]
}

func tftpError(p []byte) (code uint16, ok bool) {
	if len(p) < 4 || binary.BigEndian.Uint16(p) != 5 {
		return 0, false
	}
	return binary.BigEndian.Uint16(p[2:]), true
}

func TestTFTPConfined(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	dir := s.cfg.Bundle.Dir
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("outside"), 0o644)
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "abs-escape")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "ok.txt"), []byte("inside"), 0o644)
	if err := os.Symlink("../"+KernelFile, filepath.Join(dir, "sub", "inner-link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		code uint16 // 2 access violation, 1 not found, 0 = served
	}{
		{"../etc/passwd", 2},
		{"../../../../../../etc/passwd", 2},
		{"sub/../../etc/passwd", 2},
		{"/etc/passwd", 2},
		{"/" + KernelFile, 2},
		{"..\\..\\etc\\passwd", 2},
		{"escape", 2},
		{"abs-escape", 2},
		{"sub", 1},
		{"missing", 1},
		{"sub/ok.txt", 0},
		{"sub/inner-link", 0},
		{BIOSBootFile, 0},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, "/", "_"), func(t *testing.T) {
			f, _, err := (&TFTPHandler{root: mustRoot(t, dir)}).Open(tc.name)
			if f != nil {
				f.Close()
			}
			reply := rawTFTP(t, s.TFTPAddr, rrq(tc.name, "octet"), 3*time.Second)
			if reply == nil {
				t.Fatal("no reply")
			}
			code, isErr := tftpError(reply)
			switch {
			case tc.code == 0 && (isErr || err != nil):
				t.Fatalf("refused a good file: error %d, %v", code, err)
			case tc.code != 0 && !isErr:
				t.Fatalf("served %q (opcode %d), want error %d", tc.name, binary.BigEndian.Uint16(reply), tc.code)
			case tc.code != 0 && code != tc.code:
				t.Fatalf("error code %d, want %d", code, tc.code)
			}
			if bytes.Contains(reply, []byte("root:")) || bytes.Contains(reply, []byte("outside")) {
				t.Fatal("content from outside the bundle leaked")
			}
		})
	}
	// Writes are refused.
	wrq := rrq("new", "octet")
	wrq[1] = 2
	if code, ok := tftpError(rawTFTP(t, s.TFTPAddr, wrq, 3*time.Second)); !ok || code != 4 {
		t.Fatalf("write request: error %d (%v), want 4 illegal operation", code, ok)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Fatal("a write request created a file")
	}
}

func mustRoot(t testing.TB, dir string) *os.Root {
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestTFTPOptionNegotiation(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	// OACK carries the negotiated blksize, windowsize and tsize.
	reply := rawTFTP(t, s.TFTPAddr, rrq(InitrdFile, "octet", "blksize", "1468", "windowsize", "8", "tsize", "0"), 3*time.Second)
	if len(reply) < 2 || binary.BigEndian.Uint16(reply) != 6 {
		t.Fatalf("no OACK: %q", reply)
	}
	oack := string(reply[2:])
	for _, want := range []string{"blksize\x001468\x00", "windowsize\x008\x00", fmt.Sprintf("tsize\x00%d\x00", 1<<20)} {
		if !strings.Contains(oack, want) {
			t.Errorf("OACK %q lacks %q", oack, want)
		}
	}
	// A whole transfer with both options gives the exact file.
	want, _ := os.ReadFile(filepath.Join(s.cfg.Bundle.Dir, InitrdFile))
	for _, o := range [][]tftp.ClientOpt{
		{tftp.ClientBlocksize(1468), tftp.ClientWindowsize(16)},
		{}, // RFC 1350 defaults: 512-byte blocks, lock-step
	} {
		c, err := tftp.NewClient(o...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Get(fmt.Sprintf("tftp://%s/%s", s.TFTPAddr, InitrdFile))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("transfer gave %d bytes, want %d identical", len(got), len(want))
		}
	}
}
