# As server, with the mistake this fixture is for: an md member is type "mdraid", not "mdadm".
{ lib, ... }:
let
  member = device: {
    type = "disk";
    inherit device;
    content = {
      type = "gpt";
      partitions = {
        boot = { size = "1M"; type = "EF02"; };
        mdadm = {
          size = "100%";
          content = { type = "mdadm"; name = "raid1"; };
        };
      };
    };
  };
in
{
  boot.loader.systemd-boot.enable = false;
  boot.loader.grub.enable = true;
  disko.devices = {
    disk.disk1 = member "/dev/vda";
    disk.disk2 = member "/dev/vdb";
    mdadm.raid1 = {
      type = "mdadm";
      level = 1;
      content = {
        type = "gpt";
        partitions.primary = {
          size = "100%";
          content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; };
        };
      };
    };
  };
}
