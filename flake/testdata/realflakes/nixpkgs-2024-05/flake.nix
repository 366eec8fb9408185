{
  description = "Stand-in for a nixpkgs from before 2024-06: its lib has no match and no toShellVars";

  # Tests replace this URL with a path: to the nixpkgs stand-in.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      old = builtins.removeAttrs nixpkgs.lib [ "match" "toShellVars" "nixosSystem" ];
    in
    {
      lib = old // { nixosSystem = nixpkgs.mkNixosSystem old; };
    };
}
