{ ... }:
{
  imports = [
    ./modules/system.nix
    ./modules/secrets.nix
  ];
}
