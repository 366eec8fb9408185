# The example's stand-in for nixpkgs.lib + nixosSystem + home-manager: just
# enough, in plain Nix, for NixOS-shaped configurations to evaluate offline
# (Nix 2.8, no nixpkgs). See lib/modules.nix for the module system.
let
  modules = import ./modules.nix;
  inherit (builtins) attrNames concatMap filter listToAttrs mapAttrs;

  lib = modules // {
    inherit attrNames concatMap filter mapAttrs;
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: as: if cond then as else { };
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);

    # Like home-manager.lib.homeManagerConfiguration.
    homeManagerConfiguration = { pkgs, modules }:
      lib.evalModules {
        modules = [ ./home-core.nix ] ++ modules;
        specialArgs = { inherit pkgs lib; };
      };

    # Like nixpkgs.lib.nixosSystem: evaluates the modules into
    # { config, options, pkgs }; config.system.build.toplevel is a derivation.
    # standin is the flake's nixpkgs input (kernel, busybox, boot loaders);
    # it is read only when a system is built.
    nixosSystem = { system, modules, specialArgs ? { }, standin ? null }:
      let
        pkgs = import ./pkgs.nix { inherit system; };
        evaluated = lib.evalModules {
          modules = [ ./nixos-core.nix ./disko.nix ./sops.nix ] ++ modules;
          specialArgs = { inherit pkgs lib standin; } // specialArgs;
        };
      in { inherit (evaluated) config options; inherit pkgs; };
  };
in
lib
