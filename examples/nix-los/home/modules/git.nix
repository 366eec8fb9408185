# Git configuration.
{ config, lib, pkgs, ... }:
let
  cfg = config.custom.git;
in
{
  options.custom.git = {
    enable = lib.mkEnableOption "git";
    userName = lib.mkOption { type = lib.types.str; default = "nixlos user"; };
    userEmail = lib.mkOption { type = lib.types.str; default = "nixlos@example.invalid"; };
  };

  config = lib.mkIf cfg.enable {
    programs.git = {
      enable = true;
      inherit (cfg) userName userEmail;
      extraConfig.init.defaultBranch = "main";
    };
    home.packages = [ pkgs.git ];
  };
}
