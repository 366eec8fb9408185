{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "platform";
  # Not a platform: the stand-in's nixpkgs.hostPlatform is a string or an attribute set.
  nixpkgs.hostPlatform = 64;
}
