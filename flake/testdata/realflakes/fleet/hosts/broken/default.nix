{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "broken";
}
