# laptop: UEFI, one disk, LUKS-encrypted LVM (see ./disko.nix).
{ lib, ... }:
{
  imports = [ ./hardware.nix ./disko.nix ];

  networking.hostName = "laptop";
  networking.networkmanager.enable = true;

  custom.development = {
    enable = true;
    languages = [ "go" "rust" "python" ];
  };
  custom.secrets.enable = true;

  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;

  # The serial console too, so the installed system is seen (and tested) there.
  boot.kernelParams = [ "console=tty0" "console=ttyS0,115200" ];
  boot.loader.timeout = 1;
}
