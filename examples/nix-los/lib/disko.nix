# Stand-in for disko's NixOS module: declares disko.devices, the layout nixlos
# partitions from (same shape as disko's sparse, hand-written form).
{ lib, ... }:
{
  options.disko = {
    devices = lib.mkOption {
      type = lib.types.anything;
      default = { };
      description = "disko devices: disk, mdadm, lvm_vg, nodev.";
    };
    enableConfig = lib.mkOption { type = lib.types.bool; default = true; };
  };
}
