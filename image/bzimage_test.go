package image

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

func fakeBzImage(version string) []byte {
	b := make([]byte, 0x1000)
	b[0x1fe], b[0x1ff] = 0x55, 0xaa
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x20f)
	binary.LittleEndian.PutUint16(b[0x20e:], 0x300)
	copy(b[0x500:], version+"\x00")
	return b
}

func TestKernelVersion(t *testing.T) {
	tests := []struct {
		name, want string
		img        []byte
		wantErr    bool
	}{
		{"synthetic", "6.6.1-nixlos", fakeBzImage("6.6.1-nixlos (builder@nix) #1 SMP"), false},
		{"not a kernel", "", make([]byte, 0x1000), true},
		{"short", "", []byte("MZ"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := KernelVersion(bytes.NewReader(tc.img))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("got %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
	// The Debian kernel the boot tests use: its file name carries the release.
	testKernel := testenv.Kernel(t).Image
	f, err := os.Open(testKernel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, banner, err := KernelVersion(f)
	if err != nil || !strings.HasSuffix(testKernel, "-"+got) {
		t.Errorf("Debian kernel: got %q (%q), %v", got, banner, err)
	}
}

func FuzzKernelVersion(f *testing.F) {
	f.Add(fakeBzImage("6.1.0 x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		KernelVersion(bytes.NewReader(b))
	})
}
