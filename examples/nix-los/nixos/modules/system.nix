# Users, sudo, locale, ssh, and the user's home-manager configuration.
{ config, lib, ... }:
let
  cfg = config.custom.system;
in
{
  options.custom.system = {
    enable = lib.mkEnableOption "the base system (user, sudo, locale)";
    user = lib.mkOption { type = lib.types.str; default = "nixlos"; description = "The main user."; };
    locale = lib.mkOption { type = lib.types.str; default = "en_US.UTF-8"; };
    timeZone = lib.mkOption { type = lib.types.str; default = "UTC"; };
  };

  config = lib.mkIf cfg.enable {
    users.users.${cfg.user} = {
      isNormalUser = true;
      extraGroups = [ "wheel" ];
    };
    security.sudo.enable = true;
    security.sudo.wheelNeedsPassword = false;
    i18n.defaultLocale = cfg.locale;
    time.timeZone = cfg.timeZone;
    services.openssh.enable = true;
    services.openssh.settings.PasswordAuthentication = false;
    home-manager.users.${cfg.user} = {
      imports = [ ../../home ];
      home.username = cfg.user;
      home.homeDirectory = "/home/${cfg.user}";
    };
  };
}
