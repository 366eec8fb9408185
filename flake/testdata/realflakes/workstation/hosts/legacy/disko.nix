# An msdos partition table (disko's legacy "table" type), BIOS boot.
{
  boot.loader.systemd-boot.enable = false;
  boot.loader.grub.enable = true;
  disko.devices.disk.main = {
    type = "disk";
    device = "/dev/sda";
    content = {
      type = "table";
      format = "msdos";
      partitions = [
        {
          name = "boot";
          part-type = "primary";
          start = "1M";
          end = "512M";
          bootable = true;
          content = { type = "filesystem"; format = "ext4"; mountpoint = "/boot"; };
        }
        {
          name = "root";
          part-type = "primary";
          start = "512M";
          end = "100%";
          content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; };
        }
      ];
    };
  };
}
