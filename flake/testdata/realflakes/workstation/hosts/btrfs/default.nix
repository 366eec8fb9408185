{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "btrfs";
}
