# Builds a host's toplevel with the stand-in's busybox as the only tool.
# Env: out standin busybox tree initrd fstab loader version hostName
# kernelVersion kernelParams timeout grubDevices grubBoot ageKeyFile manifest.
mkdir -p "$TMPDIR/bin"
for a in $("$busybox" --list); do ln -s "$busybox" "$TMPDIR/bin/$a"; done
export PATH="$TMPDIR/bin"

mkdir -p "$out/bin" "$out/etc" "$out/sw/bin"
for a in $(busybox --list); do ln -s "$busybox" "$out/sw/bin/$a"; done
# The stand-in's dynamically linked tools, run through its own loader
# (grub-bios-setup runs mdadm from PATH to name md arrays).
for t in cryptsetup lvm dmsetup mdadm grub-probe; do
	rm -f "$out/sw/bin/$t"
	printf '#!%s sh\nexec %s --library-path %s %s "$@"\n' "$busybox" "$standin/lib/ld-linux-x86-64.so.2" "$standin/lib" "$standin/libexec/$t" >"$out/sw/bin/$t"
	chmod 0555 "$out/sw/bin/$t"
done
ln -s "$standin/kernel/bzImage" "$out/kernel"
ln -s "$initrd/initrd" "$out/initrd"
printf '%s\n' "$kernelParams" >"$out/kernel-params"
printf '%s\n' "$version" >"$out/nixos-version"
printf '%s\n' "$hostName" >"$out/etc/hostname"
printf '%s' "$fstab" >"$out/etc/fstab"
cp "$manifest" "$out/manifest.nix"
echo "$kernelVersion" >"$out/kernel-version"

# The scripts: a header with this system's values, then the body.
header() {
	echo "#!$busybox sh"
	echo "# $1 of $hostName ($version), made by the nix-los example (lib/system-tree)."
	echo "systemConfig='$out'"
	echo "standin='$standin'"
	echo "hostName='$hostName'"
	echo "loader='$loader'"
	echo "timeout='$timeout'"
	echo "grubDevices='$grubDevices'"
	echo "grubBoot='$grubBoot'"
	echo "ageKeyFile='$ageKeyFile'"
	echo "export PATH='$out/sw/bin'"
}
{ header "stage 2 init"; cat "$tree/init"; } >"$out/init"
{ header "activation script"; cat "$tree/activate"; } >"$out/activate"
{ header "switch-to-configuration"; cat "$tree/bin/switch-to-configuration"; } >"$out/bin/switch-to-configuration"
chmod 0555 "$out/init" "$out/activate" "$out/bin/switch-to-configuration"
