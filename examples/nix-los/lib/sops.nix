# Stand-in for sops-nix's NixOS module: the options nixlos reads to place the
# age key (sops.age.keyFile) and to check it against the host's secrets.
{ lib, ... }:
{
  options.sops = {
    defaultSopsFile = lib.mkOption { type = lib.types.nullOr lib.types.path; default = null; };
    age.keyFile = lib.mkOption { type = lib.types.nullOr lib.types.str; default = null; };
    age.generateKey = lib.mkOption { type = lib.types.bool; default = false; };
    secrets = lib.mkOption { type = lib.types.attrsOf lib.types.anything; default = { }; };
  };
}
