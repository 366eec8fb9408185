# Neovim as the default editor; VS Code optional.
{ config, lib, pkgs, ... }:
let
  cfg = config.custom.editor;
in
{
  options.custom.editor = {
    enable = lib.mkEnableOption "the editors";
    vscode = lib.mkOption { type = lib.types.bool; default = false; };
  };

  config = lib.mkIf cfg.enable {
    programs.neovim = { enable = true; defaultEditor = true; };
    home.sessionVariables.EDITOR = "nvim";
    home.packages = [ pkgs.neovim ] ++ lib.optional cfg.vscode pkgs.vscode;
  };
}
