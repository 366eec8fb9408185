{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "crypt";
}
