# Builds the stage-1 initrd (gzip newc cpio) of one host, with the stand-in's
# busybox as the only tool. Env: out standin busybox tree kernelVersion
# hostName modules luksLines mountLines swraid.
mkdir -p "$TMPDIR/bin"
for a in $("$busybox" --list); do ln -s "$busybox" "$TMPDIR/bin/$a"; done
export PATH="$TMPDIR/bin"

r="$TMPDIR/root"
mkdir -p "$r/bin" "$r/sbin" "$r/lib64" "$r/lib/x86_64-linux-gnu" "$r/lib/modules" "$r/etc" \
	"$r/dev" "$r/proc" "$r/sys" "$r/run" "$r/tmp" "$r/mnt-root" "$r/usr/bin" "$r/usr/sbin"
cp "$busybox" "$r/bin/busybox"
for a in $(busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
cp -r "$standin/lib/modules/$kernelVersion" "$r/lib/modules/"
cp "$standin/lib/ld-linux-x86-64.so.2" "$r/lib64/"
for l in "$standin"/lib/*.so*; do cp "$l" "$r/lib/x86_64-linux-gnu/"; done
for t in cryptsetup lvm dmsetup mdadm; do cp "$standin/libexec/$t" "$r/sbin/$t"; done
# The kernel's on-demand loads (crypto, filesystems) run /sbin/modprobe.
ln -s ../bin/busybox "$r/sbin/modprobe"

cp "$tree/stage1-init.sh" "$r/init"
{
	echo "hostName='$hostName'"
	echo "modules='$modules'"
	echo "swraid='$swraid'"
} >"$r/etc/nixlos-stage1.conf"
printf '%s' "$luksLines" >"$r/etc/nixlos-luks"
printf '%s' "$mountLines" >"$r/etc/nixlos-mounts"
echo "root:x:0:0:root:/root:/bin/sh" >"$r/etc/passwd"
echo "root:x:0:" >"$r/etc/group"
chmod -R u+w "$r"
chmod 0755 "$r/init"

mkdir -p "$out"
cd "$r"
find . | sort | cpio -o -H newc -R 0:0 2>/dev/null | gzip -6 >"$out/initrd"
