# The NixOS options the example uses, and system.build.toplevel: a real
# derivation built by Nix's own `builtin:buildenv` builder, so `nix build`
# needs no shell, no nixpkgs and no binary in the flake (it works in a
# chroot store such as `nix build --store /mnt` too). The result is a tiny
# NixOS-shaped system: nixos-version, init, bin/switch-to-configuration
# (from ./system-tree) and manifest.nix describing this host.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  anything = mkOption { type = types.anything; default = { }; };
  cfg = config;

  homeUsers = builtins.mapAttrs (user: module:
    (lib.homeManagerConfiguration { inherit pkgs; modules = [ module ]; }).config) cfg.home-manager.users;

  description = {
    hostName = cfg.networking.hostName;
    system = cfg.nixpkgs.hostPlatform;
    nixosVersion = "${cfg.system.nixos.release}.${cfg.system.nixos.label}";
    stateVersion = cfg.system.stateVersion;
    packages = map (p: p.name) cfg.environment.systemPackages;
    users = builtins.attrNames cfg.users.users;
    home = builtins.mapAttrs (u: h: map (p: p.name) h.home.packages) homeUsers;
    sopsSecrets = builtins.attrNames cfg.sops.secrets;
    fileSystems = cfg.disko.devices;
  };
  json = builtins.toJSON description;
  nixText = "builtins.fromJSON ''" + builtins.replaceStrings [ "''" "\${" ] [ "'''" "''\${" ] json + "''\n";
in
{
  options = {
    networking.hostName = mkOption { type = types.str; default = "nixos"; };
    networking.networkmanager = anything;
    nixpkgs.hostPlatform = mkOption { type = types.str; description = "The platform the system runs on, e.g. x86_64-linux."; };
    system.stateVersion = mkOption { type = types.str; };
    system.nixos.release = mkOption { type = types.str; default = "26.05"; };
    system.nixos.label = mkOption { type = types.str; default = "nixlos-example"; };
    system.build.toplevel = mkOption { type = types.package; description = "The system closure nixos-install installs."; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    environment.variables = mkOption { type = types.attrsOf types.str; default = { }; };
    users.users = mkOption { type = types.attrsOf types.anything; default = { }; };
    users.mutableUsers = mkOption { type = types.bool; default = true; };
    security.sudo.enable = mkOption { type = types.bool; default = false; };
    security.sudo.wheelNeedsPassword = mkOption { type = types.bool; default = true; };
    i18n.defaultLocale = mkOption { type = types.str; default = "en_US.UTF-8"; };
    time.timeZone = mkOption { type = types.nullOr types.str; default = null; };
    boot = anything;
    services = anything;
    programs = anything;
    hardware = anything;
    nix.settings = anything;
    home-manager.users = mkOption { type = types.attrsOf types.anything; default = { }; description = "home-manager modules per user."; };
  };

  config.system.build.toplevel = derivation {
    name = "nixos-system-${cfg.networking.hostName}-${cfg.system.nixos.release}.${cfg.system.nixos.label}";
    system = cfg.nixpkgs.hostPlatform;
    builder = "builtin:buildenv";
    # builtin:buildenv links the contents of each listed directory into $out
    # ("active priority outputs path" per entry) and adds $out/manifest.nix.
    derivations = [ "true" "5" "1" "${./system-tree}" ];
    manifest = builtins.toFile "nixos-system-${cfg.networking.hostName}.nix" nixText;
  };
}
