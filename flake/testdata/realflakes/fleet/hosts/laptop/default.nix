{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "laptop";
}
