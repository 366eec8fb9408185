# GPT that boots both ways: a BIOS boot partition (EF02) and an ESP.
{
  boot.loader.grub = { enable = true; efiSupport = true; efiInstallAsRemovable = true; };
  disko.devices.disk.main = {
    type = "disk";
    device = "/dev/vda";
    content = {
      type = "gpt";
      partitions = {
        boot = { size = "1M"; type = "EF02"; };
        ESP = {
          size = "500M";
          type = "EF00";
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
