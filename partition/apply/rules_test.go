package apply

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestMountArgs(t *testing.T) {
	flags, data := mountArgs([]string{"defaults", "noatime", "compress=zstd", "subvol=/nix", "X-mount.mkdir", "ro", "umask=0077", "nofail"})
	if flags != unix.MS_NOATIME|unix.MS_RDONLY || data != "compress=zstd,subvol=/nix,umask=0077" {
		t.Errorf("got flags %#x data %q", flags, data)
	}
}
