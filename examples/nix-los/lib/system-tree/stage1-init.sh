#!/bin/sh
# Stage 1 of the nix-los example system (the initrd's /init): load modules,
# make disko's device names without udev (by-partlabel, md names), assemble
# md arrays, open LUKS (asking for the passphrase on the console), activate
# LVM, mount the host's fileSystems under /mnt-root in disko's mount order
# and switch_root to the init= of the kernel command line.
export PATH=/bin:/sbin
. /etc/nixlos-stage1.conf

fail() {
	echo "nix-los stage1: $*"
	echo "nix-los stage1: starting a shell (exit it to retry the boot)"
	while :; do setsid cttyhack sh || sh; done
}

mkdir -p /proc /sys /dev /run /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev || fail "cannot mount devtmpfs"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /dev/pts /dev/shm /run/cryptsetup /run/lock/lvm /run/mdadm
echo "nix-los stage1: $hostName, kernel $(uname -r)"

init=
for w in $(cat /proc/cmdline); do
	case "$w" in
	init=*) init=${w#init=} ;;
	nixlos.stage1.shell) sh ;;
	esac
done
[ -n "$init" ] || fail "no init= on the kernel command line"

for m in $modules; do modprobe -q "$m" 2>/dev/null; done

# /dev/disk/by-partlabel/<PARTNAME> for every partition (GPT names).
links() {
	mkdir -p /dev/disk/by-partlabel /dev/disk/by-id
	for u in /sys/class/block/*/uevent; do
		d=${u%/uevent}
		dev=${d##*/}
		name=$(sed -n 's/^PARTNAME=//p' "$u")
		[ -n "$name" ] && ln -sfn "/dev/$dev" "/dev/disk/by-partlabel/$name"
	done
	# md arrays: /dev/md/<name> (mdadm makes it) → by-id/md-name-any:<name>[-partN]
	for l in /dev/md/*; do
		[ -e "$l" ] || continue
		name=${l##*/}
		real=$(readlink -f "$l")
		base=${real##*/}
		ln -sfn "$real" "/dev/disk/by-id/md-name-any:$name"
		for p in /sys/class/block/"$base"/"$base"p*; do
			[ -e "$p" ] || continue
			pn=${p##*/}
			ln -sfn "/dev/$pn" "/dev/disk/by-id/md-name-any:$name-part${pn##*p}"
		done
	done
}

# md_assemble: assemble every md array found on the disks, each from its own
# ARRAY line (as NixOS' mdadm.conf lists them). A bare `--assemble --scan`
# gives up on all remaining arrays once it meets a stale member of an array
# it has already started ("Found some drive for an array that is already
# active … giving up").
md_assemble() {
	mdadm --examine --scan >/run/mdadm/mdadm.conf
	mdadm --assemble --scan --config=/run/mdadm/mdadm.conf --homehost=any
}

# wait_for DEV [SECONDS]: until DEV exists (re-making the links each try).
wait_for() {
	n=0
	while [ ! -e "$1" ]; do
		n=$((n + 1))
		[ "$n" -gt $((${2:-30} * 4)) ] && return 1
		[ "$n" = 8 ] && echo "nix-los stage1: waiting for $1"
		usleep 250000
		if [ -n "$swraid" ]; then
			md_assemble >/dev/null 2>&1
			# after 5 s, start arrays that miss a member (a failed disk)
			if [ "$n" = 20 ]; then
				for md in /dev/md[0-9]*; do
					[ -b "$md" ] && mdadm --run "$md" 2>&1 | sed 's/^/nix-los stage1: /'
				done
			fi
		fi
		links
	done
	return 0
}

links
if [ -n "$swraid" ]; then
	md_assemble 2>&1 | sed 's/^/nix-los stage1: /'
	links
fi

export DM_DISABLE_UDEV=1
# The lists are read on fd 3: stdin stays the console (cryptsetup's prompt, the rescue shell).
while read -r name device discard <&3; do
	[ -n "$name" ] || continue
	wait_for "$device" || fail "LUKS device $device of $name not found"
	extra=
	[ "$discard" = discard ] && extra=--allow-discards
	tries=0
	until [ -e "/dev/mapper/$name" ]; do
		tries=$((tries + 1))
		echo "nix-los stage1: opening LUKS $name ($device)"
		# Echo goes off before the prompt is shown, so nothing typed after
		# it is echoed or lost (cryptsetup's own prompt flushes input).
		stty -echo 2>/dev/null
		printf 'Enter passphrase for %s (%s): ' "$device" "$name"
		pass=
		IFS= read -r pass
		stty echo 2>/dev/null
		echo
		if ! printf '%s' "$pass" | cryptsetup open $extra --key-file=- "$device" "$name"; then
			echo "nix-los stage1: could not open $device (wrong key?), asking again"
			[ "$tries" -ge 20 ] && fail "cannot open LUKS $name on $device"
		fi
		pass=
	done
done 3</etc/nixlos-luks

lvmconf='global { locking_dir = "/run/lock/lvm" } activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }'
if lvm pvs --noheadings --config "$lvmconf" 2>/dev/null | grep -q .; then
	lvm vgchange -ay --sysinit --config "$lvmconf" 2>&1 | sed 's/^/nix-los stage1: /'
	lvm vgmknodes --config "$lvmconf" >/dev/null 2>&1
fi
links

while read -r device mp fstype options <&3; do
	[ -n "$device" ] || continue
	wait_for "$device" || fail "device $device of $mp not found"
	mkdir -p "/mnt-root$mp"
	mount -t "$fstype" -o "$options" "$device" "/mnt-root$mp" || fail "cannot mount $device on $mp ($fstype)"
	echo "nix-los stage1: mounted $device on $mp"
done 3</etc/nixlos-mounts

[ -e "/mnt-root$init" ] || [ -L "/mnt-root$init" ] || fail "init $init not found on the root filesystem"
for d in dev proc sys run; do
	mkdir -p "/mnt-root/$d"
	mount --move "/$d" "/mnt-root/$d" || fail "cannot move /$d"
done
exec switch_root /mnt-root "$init"
