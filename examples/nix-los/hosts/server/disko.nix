# server disk layout (disko, sparse form; as disko's example/boot-raid1.nix
# and example/mdadm.nix): /dev/vda and /dev/vdb, each GPT with a BIOS boot
# partition (EF02), an ESP that is a member of RAID1 "boot" (metadata 1.0,
# so firmware reads it as plain vfat) and a member of RAID1 "raid1"
# (metadata 1.2) that holds a GPT with ext4 / (4G) and ext4 /srv (the rest,
# the server's data). Fits two 8 GiB disks.
let
  member = device: {
    type = "disk";
    inherit device;
    content = {
      type = "gpt";
      partitions = {
        boot = {
          size = "1M";
          type = "EF02";
        };
        ESP = {
          size = "512M";
          type = "EF00";
          content = {
            type = "mdraid";
            name = "boot";
          };
        };
        mdadm = {
          size = "100%";
          content = {
            type = "mdraid";
            name = "raid1";
          };
        };
      };
    };
  };
in
{
  disko.devices = {
    disk.disk1 = member "/dev/vda";
    disk.disk2 = member "/dev/vdb";
    mdadm = {
      boot = {
        type = "mdadm";
        level = 1;
        metadata = "1.0";
        content = {
          type = "filesystem";
          format = "vfat";
          mountpoint = "/boot";
          mountOptions = [ "umask=0077" ];
        };
      };
      raid1 = {
        type = "mdadm";
        level = 1;
        metadata = "1.2";
        content = {
          type = "gpt";
          partitions.primary = {
            size = "4G";
            content = {
              type = "filesystem";
              format = "ext4";
              mountpoint = "/";
            };
          };
          # the server's data: kept across reinstalls with nixlos.keep=/srv
          partitions.srv = {
            size = "100%";
            content = {
              type = "filesystem";
              format = "ext4";
              mountpoint = "/srv";
            };
          };
        };
      };
    };
  };
}
