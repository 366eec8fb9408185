// Package pxe network-boots machines into the nixlos installer and tracks
// them by MAC address: DHCP (proxyDHCP beside a LAN's own server, or full
// DHCP on an isolated lab network), read-only TFTP for the iPXE binaries,
// and HTTP for per-MAC iPXE scripts, the kernel, the initrd, installer status
// reports and the one-time age key. It also exports the same bundle as
// matchbox or dnsmasq configuration.
//
// # Boot chain
//
// A PXE ROM asks DHCP; it gets undionly.kpxe (BIOS, arch 0) or ipxe.efi (UEFI
// x64, arch 7/9) over TFTP, or http://ADDR:PORT/ipxe.efi for UEFI HTTP boot
// (arch 16, vendor class HTTPClient). iPXE (user class "iPXE" or option 175)
// is sent http://ADDR:PORT/boot.ipxe?mac=MAC, which renders:
//
//	#!ipxe
//	kernel http://ADDR:PORT/vmlinuz initrd=initrd BASE nixlos.server=http://ADDR:PORT \
//	       nixlos.host=H nixlos.auto=1 [nixlos.disk=D | nixlos.disk.K=D …] [nixlos.after=A] nixlos.token=T
//	initrd --name initrd http://ADDR:PORT/initrd
//	boot
//
// (one nixlos.disk.K=D per entry of the map's per-disk form, disks = {K = D}),
// or, once that MAC reported "complete", a local-disk boot
// (BIOS: sanboot --no-describe --drive 0x80; UEFI: chain localboot.efi, a
// GRUB image that starts the disk's \EFI\BOOT\BOOTX64.EFI; see LocalBootScript).
//
// # Installer wire protocol (nixlos.server=URL)
//
// Kernel command line parameters added by the server:
//
//	nixlos.server=http://ADDR:PORT   base URL for the endpoints below
//	nixlos.token=T                   one-time boot token (32 hex digits), new on every boot.ipxe render
//
// POST URL/v1/status with Content-Type application/json and body
//
//	{"mac":"52:54:00:12:34:56","host":"server","state":"installing",
//	 "message":"partitioning /dev/vda","progress":40}
//
// state is one of booting, installing, complete, failed; progress (0–100) and
// message are optional; mac is required. Reply: 204 No Content, or 400 with a
// text reason. "complete" switches that MAC to local boot for later boots.
//
// GET URL/v1/key?mac=MAC&token=T returns the age key file (200,
// application/octet-stream, Cache-Control: no-store) only when MAC is in the
// map with key = true, T is the token of that MAC's latest boot script, and T
// has not been used before. Otherwise 403 (refused: logged as state
// "refused", never with the key) or 404 when the server has no key.
//
// GET URL/v1/machine?mac=MAC returns the map entry as JSON (200) or 404:
//
//	{"mac":"52:54:00:12:34:56","host":"server","disk":"auto","after":"poweroff",
//	 "auto":true,"key":true,"installed":false}
//
// ("disks":{"disk1":"/dev/vda","disk2":"/dev/vdb"} instead of "disk" for an
// entry using the per-disk form), for an installer that was started without
// nixlos.host (e.g. from USB with only nixlos.server=); it issues no token.
//
// wire.Discovery (mkiso serve --discover): an unknown MAC's script boots the
// installer with only nixlos.server=URL nixlos.discover=1. It POSTs to
// URL/v1/discover its wire.Discovery (application/json):
//
//	{"mac":"52:54:00:12:34:70","vendor":"QEMU","product":"Standard PC …",
//	 "report":{…installer detect --json…}}
//
// Reply: 204 (the MAC is "discovered"; the report is kept for mkiso
// enroll), 409 when the MAC is in the map already, 404 without --discover.
// It then polls GET URL/v1/machine until 200 with no "waiting" field (a
// MAC mapped to a host the bundle's initrd lacks gets
// "waiting":"host H is not in the served bundle yet …") and reboots.
//
// GET URL/nix-cache/nix-cache-info, URL/nix-cache/HASH.narinfo and
// URL/nix-cache/nar/FILE serve the bundle's binary cache (DIR/pxe/nix-cache,
// written by mkiso build --closure), read-only, as a Nix binary cache: the
// installer runs nix copy --from URL/nix-cache with only the manifest's
// cache key trusted (package closure). 404 when the bundle has none.
//
// The protocol's bodies, their validation (DecodeStatus, DecodeMachineInfo,
// DecodeDiscovery), the machine states and the installer's client calls
// (ReportStatus, FetchKey, FetchMachine, PostDiscovery) live in package
// pxe/wire, which is all the installer links of PXE.
package pxe
