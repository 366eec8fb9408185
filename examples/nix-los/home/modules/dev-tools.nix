# Tmux and command-line utilities.
{ config, lib, pkgs, ... }:
let
  cfg = config.custom.dev-tools;
in
{
  options.custom.dev-tools.enable = lib.mkEnableOption "tmux and CLI utilities";

  config = lib.mkIf cfg.enable {
    programs.tmux.enable = true;
    home.packages = [ pkgs.tmux pkgs.ripgrep pkgs.fd pkgs.fzf pkgs.jq pkgs.bat ];
  };
}
