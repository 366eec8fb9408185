{
  description = "nix-los: a portable NixOS configuration (nixlos example; evaluates offline with Nix 2.8)";

  # A real nix-los flake takes nixpkgs, home-manager, sops-nix and disko as
  # inputs. This example evaluates offline with Debian's nix-bin: ./lib is a
  # plain-Nix stand-in for the parts it needs (module system, nixosSystem,
  # disko and sops-nix options), and `nixpkgs` is a plain source tree made
  # from this machine's Debian packages (kernel, busybox, cryptsetup, lvm,
  # mdadm, systemd-boot, GRUB): `go run ./internal/tools/standin` writes it at
  # this path; demoprep writes one next to its flake copy and re-locks.
  # Evaluating hosts and layouts never reads it; building a system does.
  inputs.nixpkgs = {
    url = "path:/var/lib/nixlos/nixpkgs-standin";
    flake = false;
  };

  outputs = { self, nixpkgs }:
    let
      lib = import ./lib;
      system = "x86_64-linux";
      pkgs = import ./lib/pkgs.nix { inherit system; };

      mkHost = name: lib.nixosSystem {
        inherit system;
        modules = [ ./nixos ./hosts/${name} ];
        specialArgs = { inherit self; };
        standin = nixpkgs;
      };

      # One host per directory under ./hosts (laptop, server, and any host
      # `mkiso enroll --new-host` writes once it is git-added).
      hostNames = builtins.filter (n: (builtins.readDir ./hosts).${n} == "directory") (builtins.attrNames (builtins.readDir ./hosts));
    in
    {
      nixosConfigurations = lib.genAttrs hostNames mkHost;

      # Standalone home-manager configuration (non-NixOS machines).
      homeConfigurations."nixlos@linux" = lib.homeManagerConfiguration {
        inherit pkgs;
        modules = [ ./home { home.username = "nixlos"; home.homeDirectory = "/home/nixlos"; } ];
      };

      lib = { inherit (lib) nixosSystem homeManagerConfiguration evalModules; };
    };
}
