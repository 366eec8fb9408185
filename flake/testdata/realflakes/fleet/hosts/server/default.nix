{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "server";
}
