{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "legacy";
}
