# sops-nix secrets (inactive unless a host sets custom.secrets.enable).
# The age key lives at keyFile on the machine; nixlos installs it there.
{ config, lib, ... }:
let
  cfg = config.custom.secrets;
in
{
  options.custom.secrets = {
    enable = lib.mkEnableOption "sops-nix secrets from secrets/secrets.yaml";
    sopsFile = lib.mkOption { type = lib.types.path; default = ../../secrets/secrets.yaml; };
    keyFile = lib.mkOption { type = lib.types.str; default = "/var/lib/sops-nix/key.txt"; };
  };

  config = lib.mkIf cfg.enable {
    sops.defaultSopsFile = cfg.sopsFile;
    sops.age.keyFile = cfg.keyFile;
    sops.secrets."example/api_token" = { };
    sops.secrets."example/user_password" = { neededForUsers = true; };
  };
}
