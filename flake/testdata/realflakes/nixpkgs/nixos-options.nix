{ lib, ... }:
let
  t = lib.types;
  platform = t.coercedTo t.str (system: { inherit system; }) (t.attrsOf t.anything);
in
{
  freeformType = t.lazyAttrsOf t.anything;

  options = {
    nixpkgs.hostPlatform = lib.mkOption { type = platform; };
    networking.hostName = lib.mkOption { type = t.str; default = "nixos"; };
    system.build = lib.mkOption { type = t.lazyAttrsOf t.raw; default = { }; };
    system.activationScripts = lib.mkOption { type = t.attrsOf t.anything; default = { }; };
    boot = lib.mkOption { type = t.lazyAttrsOf t.anything; default = { }; };
    fileSystems = lib.mkOption { type = t.attrsOf t.anything; default = { }; };
    swapDevices = lib.mkOption { type = t.listOf t.anything; default = [ ]; };
    assertions = lib.mkOption { type = t.listOf t.anything; default = [ ]; };
    warnings = lib.mkOption { type = t.listOf t.str; default = [ ]; };
  };

  config._module.args.pkgs = throw "pkgs: this offline stand-in for NixOS has no package set";
}
