{
  description = "Fixture: hosts whose options error (type errors, conflicting definitions) beside a good one";

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
      nixosConfigurations = nixpkgs.lib.genAttrs [ "ok" "keytype" "conflict" "platform" ] mkHost;
    };
}
