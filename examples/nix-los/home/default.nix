# User-level configuration: imports every home module. Used by the NixOS
# hosts (home-manager.users.<user>) and standalone (homeConfigurations).
{ lib, ... }:
{
  imports = [
    ./modules/shell.nix
    ./modules/editor.nix
    ./modules/git.nix
    ./modules/dev-tools.nix
  ];

  custom.shell.enable = lib.mkDefault true;
  custom.editor.enable = lib.mkDefault true;
  custom.git.enable = lib.mkDefault true;
  custom.dev-tools.enable = lib.mkDefault true;
}
