# laptop disk layout (disko, sparse form; as disko's example/luks-lvm.nix):
# GPT on /dev/vda: ESP (vfat, /boot) + LUKS "crypted" holding LVM VG "pool"
# with swap, root (ext4 /) and home (ext4 /home). Fits an 8 GiB disk.
# The LUKS key is read from /tmp/secret.key while formatting.
{
  disko.devices = {
    disk.main = {
      type = "disk";
      device = "/dev/vda";
      content = {
        type = "gpt";
        partitions = {
          ESP = {
            size = "512M";
            type = "EF00";
            content = {
              type = "filesystem";
              format = "vfat";
              mountpoint = "/boot";
              mountOptions = [ "umask=0077" ];
            };
          };
          luks = {
            size = "100%";
            content = {
              type = "luks";
              name = "crypted";
              settings = {
                allowDiscards = true;
                keyFile = "/tmp/secret.key";
              };
              content = {
                type = "lvm_pv";
                vg = "pool";
              };
            };
          };
        };
      };
    };
    lvm_vg.pool = {
      type = "lvm_vg";
      lvs = {
        swap = {
          size = "1G";
          content = {
            type = "swap";
            resumeDevice = true;
          };
        };
        root = {
          size = "4G";
          content = {
            type = "filesystem";
            format = "ext4";
            mountpoint = "/";
            mountOptions = [ "defaults" ];
          };
        };
        home = {
          size = "100%";
          content = {
            type = "filesystem";
            format = "ext4";
            mountpoint = "/home";
          };
        };
      };
    };
  };
}
