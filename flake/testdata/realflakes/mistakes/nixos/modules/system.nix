{ lib, ... }:
{
  time.timeZone = lib.mkDefault "UTC";
  i18n.defaultLocale = "en_US.UTF-8";
  users.users.nixlos = { isNormalUser = true; extraGroups = [ "wheel" ]; };
  boot.loader.systemd-boot.enable = lib.mkDefault true;
  system.stateVersion = "25.05";
}
