# Zsh, direnv and starship.
{ config, lib, pkgs, ... }:
let
  cfg = config.custom.shell;
in
{
  options.custom.shell = {
    enable = lib.mkEnableOption "the user shell (zsh, direnv, starship)";
    aliases = lib.mkOption { type = lib.types.attrsOf lib.types.str; default = { ll = "eza -l"; gs = "git status"; }; };
  };

  config = lib.mkIf cfg.enable {
    programs.zsh = { enable = true; shellAliases = cfg.aliases; };
    programs.direnv.enable = true;
    programs.starship.enable = true;
    home.packages = [ pkgs.zsh pkgs.direnv pkgs.starship pkgs.eza ];
  };
}
