# GPT that boots both ways: a BIOS boot partition (EF02) and an ESP, the
# ESP also in a hybrid MBR (for firmware that reads only the MBR).
# efiGptPartitionFirst = false: with the default (true), disko v1.12.0 and
# 878ec37 both write `sgdisk -h 2"/dev/vda"` (no space: sgdisk gets the
# device "2/dev/vda" and fails), so disko's own script cannot be the
# reference for that form.
{
  boot.loader.grub = { enable = true; efiSupport = true; efiInstallAsRemovable = true; };
  disko.devices.disk.main = {
    type = "disk";
    device = "/dev/vda";
    content = {
      type = "gpt";
      efiGptPartitionFirst = false;
      partitions = {
        boot = { size = "1M"; type = "EF02"; };
        ESP = {
          size = "500M";
          type = "EF00";
          hybrid = { mbrPartitionType = "0x0c"; mbrBootableFlag = true; };
          content = { type = "filesystem"; format = "vfat"; mountpoint = "/boot"; };
        };
        root = {
          size = "100%";
          content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; };
        };
      };
    };
  };
}
