{
  description = "Fixture: a workstation fleet evaluated through the real disko and sops-nix modules";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    disko.url = "github:nix-community/disko";
    disko.inputs.nixpkgs.follows = "nixpkgs";
    sops-nix.url = "github:Mic92/sops-nix";
    sops-nix.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs = { self, nixpkgs, disko, sops-nix, ... }:
    let
      mkHost = name: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        specialArgs = { inherit self; };
        modules = [
          disko.nixosModules.disko
          sops-nix.nixosModules.sops
          ./nixos
          ./hosts/${name}
        ];
      };
    in
    {
      nixosConfigurations = nixpkgs.lib.genAttrs [ "btrfs" "legacy" "hybrid" "crypt" ] mkHost;
    };
}
