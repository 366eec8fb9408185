# A tiny fixture for `mkiso build --closure`: one host whose toplevel is a
# builtin:buildenv derivation (no builder binary, no nixpkgs), with a
# one-disk layout so that it is selected.
{
  outputs = { self }: {
    nixosConfigurations.tiny.config = {
      nixpkgs.hostPlatform = "x86_64-linux";
      disko.devices.disk.main = {
        type = "disk";
        device = "/dev/vda";
        content = {
          type = "gpt";
          partitions.ESP = { size = "64M"; type = "EF00"; content = { type = "filesystem"; format = "vfat"; mountpoint = "/boot"; }; };
          partitions.root = { size = "100%"; content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; }; };
        };
      };
      system.build.toplevel = derivation {
        name = "nixos-system-tiny";
        system = "x86_64-linux";
        builder = "builtin:buildenv";
        derivations = [ "true" "5" "1" "${./system-tree}" ];
        manifest = builtins.toFile "nixos-system-tiny.nix" "[ ]";
      };
    };
  };
}
