{
  description = "Offline stand-in for nixpkgs: the real nixpkgs lib, and a nixosSystem that evaluates NixOS modules without NixOS";

  # Tests replace this URL with a path: to ../shared/realmodules' nixpkgs-lib.
  inputs.lib.url = "github:nix-community/nixpkgs.lib";

  outputs = { self, lib }:
    let
      mkNixosSystem = import ./nixos-system.nix;
    in
    {
      lib = lib.lib // { nixosSystem = mkNixosSystem lib.lib; };
      # For stand-ins of older nixpkgs: nixosSystem over another lib.
      inherit mkNixosSystem;
    };
}
