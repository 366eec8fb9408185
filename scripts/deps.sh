#!/usr/bin/env bash
# Installs, idempotently, every Debian package nixlos needs to build, test and
# demo. Installs only what is missing; runs apt-get update only then.
set -euo pipefail

PKGS=(
  # VM tests and the demo
  qemu-system-x86 qemu-utils ovmf linux-image-amd64 kmod
  # boot media
  xorriso isolinux syslinux syslinux-common syslinux-utils mtools dosfstools
  systemd-boot-efi grub-common grub-efi-amd64-bin grub-pc-bin ipxe cpio zstd xz-utils
  # partitioning tools, used by the installer and read back by tests
  gdisk parted fdisk util-linux e2fsprogs btrfs-progs xfsprogs f2fs-tools
  cryptsetup-bin lvm2 mdadm
  # flakes and the installed system
  nix-bin git busybox-static
  # PXE tests and benchmarks
  dnsmasq nginx iproute2
  # mkiso deploy VM test: the SSH server of the plain-Linux guest
  dropbear-bin
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
  echo "deps: Go is not installed. Install Go >= 1.21 (go.mod's toolchain line fetches 1.26 from the module proxy)." >&2
  exit 1
fi
echo "deps: all ${#PKGS[@]} packages present; $(go version)"
