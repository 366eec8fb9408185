{ lib, ... }:
{
  sops.defaultSopsFile = ../../secrets/secrets.yaml;
  sops.age.keyFile = lib.mkDefault "/var/lib/sops-nix/key.txt";
}
