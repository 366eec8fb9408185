{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "ok";
}
