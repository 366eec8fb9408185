{ ... }:
{
  imports = [ ./disko.nix ./keys.nix ];
  networking.hostName = "conflict";
  sops.age.keyFile = "/persist/age.key";
}
