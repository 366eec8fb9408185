# Stand-in for disko's NixOS module: declares disko.devices, the layout nixlos
# partitions from (same shape as disko's sparse, hand-written form), and, as
# disko's module does, gives NixOS what the layout implies:
#   fileSystems.<mountpoint>   by disko's device names (by-partlabel,
#                              /dev/mapper/<luks>, /dev/<vg>/<lv>, /dev/md/<name>,
#                              /dev/disk/by-id/md-name-any:<md>-part<N>)
#   swapDevices                swap partitions / LVs
#   boot.initrd.luks.devices   LUKS containers and their devices
#   boot.swraid.enable         when there are md arrays
#   boot.loader.grub.devices   every disk with an EF02 (BIOS boot) partition
{ config, lib, ... }:
let
  inherit (builtins) attrNames concatLists concatMap elemAt filter genList hashString head isAttrs
    length listToAttrs sort stringLength substring;
  cfg = config.disko;
  devices = cfg.devices;

  # disko's GPT name rule: longer than 36 bytes → first 36 hex digits of its sha256.
  gptLabel = l: if stringLength l > 36 then substring 0 36 (hashString "sha256" l) else l;
  priority = p:
    p.priority or (if (p.size or "") == "100%" then 9001 else if (p.type or "") == "EF02" then 100 else 1000);
  # Partitions in disko's order (priority, then name) with their 1-based index.
  sortedParts = parts:
    let
      named = map (n: parts.${n} // { _name = n; }) (attrNames parts);
      sorted = sort (a: b: priority a < priority b || (priority a == priority b && a._name < b._name)) named;
    in genList (i: elemAt sorted i // { _index = i + 1; }) (length sorted);

  # Everything a content node (at device `dev`, inside parent {type,name})
  # implies: lists of filesystems, swaps, luks containers, grub disks.
  walk = parent: dev: c:
    if !isAttrs c then empty
    else if c.type == "gpt" then
      let parts = sortedParts (c.partitions or { });
      in merge ([ { fs = [ ]; swap = [ ]; luks = [ ]; grub = if parent.type == "disk" && builtins.any (p: (p.type or "") == "EF02") parts then [ dev ] else [ ]; } ]
        ++ map (p:
          let
            pdev = if p ? device then p.device
              else if parent.type == "mdadm" then "/dev/disk/by-id/md-name-any:${parent.name}-part${toString p._index}"
              else "/dev/disk/by-partlabel/${gptLabel (p.label or "${parent.type}-${parent.name}-${p._name}")}";
          in walk parent pdev (p.content or null)) parts)
    else if c.type == "filesystem" then
      empty // { fs = if c ? mountpoint && c.mountpoint != null then [ { mountPoint = c.mountpoint; device = dev; fsType = c.format; options = c.mountOptions or [ "defaults" ]; } ] else [ ]; }
    else if c.type == "swap" then empty // { swap = [ { device = dev; } ]; }
    else if c.type == "luks" then
      let inner = walk parent "/dev/mapper/${c.name}" (c.content or null);
      in inner // { luks = [ { name = c.name; device = dev; allowDiscards = c.settings.allowDiscards or false; } ] ++ inner.luks; }
    else empty; # lvm_pv, mdraid: the VG / array is walked from its own entry

  empty = { fs = [ ]; swap = [ ]; luks = [ ]; grub = [ ]; };
  merge = rs: {
    fs = concatMap (r: r.fs) rs;
    swap = concatMap (r: r.swap) rs;
    luks = concatMap (r: r.luks) rs;
    grub = concatMap (r: r.grub) rs;
  };

  all = merge (
    map (n: walk { type = "disk"; name = n; } devices.disk.${n}.device (devices.disk.${n}.content or null)) (attrNames (devices.disk or { }))
    ++ map (n: walk { type = "mdadm"; name = n; } "/dev/md/${n}" (devices.mdadm.${n}.content or null)) (attrNames (devices.mdadm or { }))
    ++ concatMap (vg: map (lv: walk { type = "lvm_vg"; name = vg; } "/dev/${vg}/${lv}" (devices.lvm_vg.${vg}.lvs.${lv}.content or null))
      (attrNames (devices.lvm_vg.${vg}.lvs or { }))) (attrNames (devices.lvm_vg or { }))
  );
in
{
  options.disko = {
    devices = lib.mkOption {
      type = lib.types.anything;
      default = { };
      description = "disko devices: disk, mdadm, lvm_vg, nodev.";
    };
    enableConfig = lib.mkOption { type = lib.types.bool; default = true; };
  };

  config = lib.mkIf cfg.enableConfig {
    fileSystems = listToAttrs (map (f: { name = f.mountPoint; value = { inherit (f) device fsType options; }; }) all.fs);
    swapDevices = all.swap;
    boot = lib.mkMerge [
      { initrd.luks.devices = listToAttrs (map (l: { inherit (l) name; value = { inherit (l) device allowDiscards; }; }) all.luks); }
      (lib.mkIf ((devices.mdadm or { }) != { }) { swraid.enable = true; })
      (lib.mkIf (all.grub != [ ]) { loader.grub.devices = all.grub; })
    ];
  };
}
