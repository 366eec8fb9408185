# Base system for every host: imports all system modules and sets defaults
# that hosts/<name>/ may override.
{ lib, ... }:
{
  imports = [
    ./modules/system.nix
    ./modules/development.nix
    ./modules/shell.nix
    ./modules/secrets-example.nix
    ./modules/nixlos.nix
  ];

  custom.system.enable = lib.mkDefault true;
  custom.shell.enable = lib.mkDefault true;

  system.stateVersion = lib.mkDefault "26.05";
  nix.settings.experimental-features = [ "nix-command" "flakes" ];
}
