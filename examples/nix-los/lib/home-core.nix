# The home-manager options the example's home/ modules use.
{ lib, ... }:
{
  options = {
    home.username = lib.mkOption { type = lib.types.str; };
    home.homeDirectory = lib.mkOption { type = lib.types.str; };
    home.stateVersion = lib.mkOption { type = lib.types.str; default = "26.05"; };
    home.packages = lib.mkOption { type = lib.types.listOf lib.types.package; default = [ ]; };
    home.sessionVariables = lib.mkOption { type = lib.types.attrsOf lib.types.str; default = { }; };
    programs = lib.mkOption { type = lib.types.anything; default = { }; };
  };
}
