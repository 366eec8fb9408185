{
  description = "nix-los: a portable NixOS configuration (nixlos example; evaluates offline with Nix 2.8)";

  # A real nix-los flake takes nixpkgs, home-manager, sops-nix and disko as
  # inputs. This example has none, so it evaluates offline with Debian's
  # nix-bin: ./lib is a plain-Nix stand-in for the parts it needs
  # (module system, nixosSystem, disko and sops-nix options).
  inputs = { };

  outputs = { self }:
    let
      lib = import ./lib;
      system = "x86_64-linux";
      pkgs = import ./lib/pkgs.nix { inherit system; };

      mkHost = name: lib.nixosSystem {
        inherit system;
        modules = [ ./nixos ./hosts/${name} ];
        specialArgs = { inherit self; };
      };
    in
    {
      nixosConfigurations = lib.genAttrs [ "laptop" "server" ] mkHost;

      # Standalone home-manager configuration (non-NixOS machines).
      homeConfigurations."nixlos@linux" = lib.homeManagerConfiguration {
        inherit pkgs;
        modules = [ ./home { home.username = "nixlos"; home.homeDirectory = "/home/nixlos"; } ];
      };

      lib = { inherit (lib) nixosSystem homeManagerConfiguration evalModules; };
    };
}
