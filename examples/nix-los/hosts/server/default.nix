# server: two disks in RAID1 (see ./disko.nix), BIOS and UEFI boot, no desktop.
{ lib, ... }:
{
  imports = [ ./hardware.nix ./disko.nix ];

  networking.hostName = "server";

  custom.shell.default = "bash";
  custom.secrets.enable = true;
  custom.development.enable = false;

  boot.swraid.enable = true;
  boot.loader.grub = {
    enable = true;
    efiSupport = true;
    efiInstallAsRemovable = true;
  };
  services.openssh.settings.PermitRootLogin = "prohibit-password";

  # The serial console too, so the installed system is seen (and tested) there.
  boot.kernelParams = [ "console=tty0" "console=ttyS0,115200" ];
  boot.loader.timeout = 1;
}
