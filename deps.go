//go:build tools

// Package nixlos pins the modules the packages depend on, so that `go mod
// tidy` keeps them while a package that uses one is still being written.
package nixlos

import (
	_ "filippo.io/age"
	_ "github.com/BurntSushi/toml"
	_ "github.com/diskfs/go-diskfs"
	_ "github.com/getsops/sops/v3/decrypt"
	_ "github.com/insomniacslk/dhcp/dhcpv4/server4"
	_ "github.com/jaypipes/ghw"
	_ "github.com/u-root/mkuimage/uimage"
	_ "github.com/u-root/u-root/pkg/cpio"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
	_ "pack.ag/tftp"
)
