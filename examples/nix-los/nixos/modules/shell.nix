# The system-wide login shell.
{ config, lib, pkgs, ... }:
let
  cfg = config.custom.shell;
in
{
  options.custom.shell = {
    enable = lib.mkEnableOption "the system shell setup";
    default = lib.mkOption { type = lib.types.enum [ "zsh" "bash" ]; default = "zsh"; };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    { environment.systemPackages = [ pkgs.bash pkgs.curl pkgs.htop ]; }
    (lib.mkIf (cfg.default == "zsh") {
      programs.zsh.enable = true;
      environment.systemPackages = [ pkgs.zsh ];
    })
  ]);
}
