{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "hybrid";
}
