# Languages and build tools, chosen per host with custom.development.languages.
{ config, lib, pkgs, ... }:
let
  cfg = config.custom.development;
  perLanguage = {
    go = [ pkgs.go ];
    rust = [ pkgs.rustup ];
    python = [ pkgs.python3 ];
    node = [ pkgs.nodejs ];
    c = [ pkgs.gcc ];
  };
in
{
  options.custom.development = {
    enable = lib.mkEnableOption "development tools";
    languages = lib.mkOption {
      type = lib.types.listOf (lib.types.enum (builtins.attrNames perLanguage));
      default = [ ];
      description = "Languages whose toolchains are installed.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ pkgs.git pkgs.gnumake ] ++ lib.concatMap (l: perLanguage.${l}) cfg.languages;
  };
}
