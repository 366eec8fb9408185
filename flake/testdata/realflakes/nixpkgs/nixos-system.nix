# nixosSystem as nixpkgs.lib.nixosSystem calls it, with lib.evalModules and
# a small module standing in for NixOS's own options: everything is
# free-form (lazyAttrsOf anything) except the options whose shape disko's
# and sops-nix's modules rely on.
lib:
{ system ? null, modules, specialArgs ? { }, ... }:
lib.evalModules {
  specialArgs = { modulesPath = toString ./.; } // specialArgs // { inherit lib; };
  modules = [ ./nixos-options.nix ]
    ++ lib.optional (system != null) { nixpkgs.hostPlatform = lib.mkDefault system; }
    ++ modules;
}
