# The NixOS options the example uses, and system.build.toplevel: a small
# NixOS-shaped system that really boots. Its kernel, busybox, cryptsetup,
# lvm, mdadm and boot loaders come from the flake's `nixpkgs` input, a
# stand-in for nixpkgs made from Debian packages (internal/standin); every
# derivation is built by that busybox (`sh -c`), offline, with Nix 2.8.
#
# The toplevel holds what a NixOS toplevel holds:
#   kernel, initrd, kernel-params, init (stage 2), activate, nixos-version,
#   bin/switch-to-configuration (boot: systemd-boot or GRUB BIOS),
#   etc/fstab, sw/bin (busybox applets), manifest.nix (this host, as data).
# The scripts are in ./system-tree; the builders prepend the host's values.
{ config, lib, pkgs, standin ? null, ... }:
let
  inherit (lib) mkOption types;
  inherit (builtins) attrNames concatStringsSep concatMap filter map sort toJSON elem;
  anything = mkOption { type = types.anything; default = { }; };
  cfg = config;

  homeUsers = builtins.mapAttrs (user: module:
    (lib.homeManagerConfiguration { inherit pkgs; modules = [ module ]; }).config) cfg.home-manager.users;

  description = {
    hostName = cfg.networking.hostName;
    system = cfg.nixpkgs.hostPlatform;
    nixosVersion = "${cfg.system.nixos.release}.${cfg.system.nixos.label}";
    stateVersion = cfg.system.stateVersion;
    packages = map (p: p.name) cfg.environment.systemPackages;
    users = builtins.attrNames cfg.users.users;
    home = builtins.mapAttrs (u: h: map (p: p.name) h.home.packages) homeUsers;
    sopsSecrets = builtins.attrNames cfg.sops.secrets;
    fileSystems = cfg.disko.devices;
  };
  json = toJSON description;
  nixText = "builtins.fromJSON ''" + builtins.replaceStrings [ "''" "\${" ] [ "'''" "''\${" ] json + "''\n";

  src = standin;
  meta = if src == null
    then throw "this system needs the flake's nixpkgs input (the stand-in: go run ./internal/tools/standin, or demoprep)"
    else import "${src}/default.nix";
  busybox = "${src}/bin/busybox";
  boot = cfg.boot;
  version = "${cfg.system.nixos.release}.${cfg.system.nixos.label}";

  # fileSystems in mount order (a parent sorts before its children).
  fsList = sort (a: b: a.mountPoint < b.mountPoint)
    (map (mp: cfg.fileSystems.${mp} // { mountPoint = mp; }) (attrNames cfg.fileSystems));
  opts = f: concatStringsSep "," (f.options or [ "defaults" ]);
  fstab = concatStringsSep "" (map (f:
    "${f.device} ${f.mountPoint} ${f.fsType} ${opts f} 0 ${if f.mountPoint == "/" then "1" else "2"}\n") fsList)
    + concatStringsSep "" (map (s: "${s.device} none swap sw 0 0\n") cfg.swapDevices);
  luks = boot.initrd.luks.devices or { };
  luksLines = concatStringsSep "" (map (n: "${n} ${luks.${n}.device} ${if luks.${n}.allowDiscards or false then "discard" else "-"}\n") (attrNames luks));
  mountLines = concatStringsSep "" (map (f: "${f.device} ${f.mountPoint} ${f.fsType} ${opts f}\n") fsList);

  fsModules = { ext4 = [ "ext4" "crc32c_generic" "crc32c_intel" ]; vfat = [ "vfat" "nls_cp437" "nls_iso8859_1" "nls_ascii" ]; btrfs = [ "btrfs" ]; xfs = [ "xfs" ]; };
  initrdModules = (boot.initrd.availableKernelModules or [ ]) ++ (boot.initrd.kernelModules or [ ])
    ++ [ "virtio_rng" ]
    ++ concatMap (f: fsModules.${f.fsType} or [ ]) fsList
    ++ (if luks != { } then [ "dm_mod" "dm_crypt" "xts" "aesni_intel" "algif_skcipher" "algif_hash" ] else [ ])
    ++ (if (cfg.disko.devices.lvm_vg or { }) != { } then [ "dm_mod" ] else [ ])
    ++ (if boot.swraid.enable or false then [ "md_mod" "raid1" ] else [ ]);
  kernelParams = boot.kernelParams or [ ];

  loader =
    if boot.loader.systemd-boot.enable or false then "systemd-boot"
    else if boot.loader.grub.enable or false then "grub"
    else "none";
  grubDevices = filter (d: d != "nodev") (boot.loader.grub.devices or [ ]);
  bootFs = cfg.fileSystems."/boot" or null;
  # GRUB's name of the /boot filesystem when it is an md array (else grub-probe finds it).
  grubBoot = if bootFs != null && builtins.substring 0 8 bootFs.device == "/dev/md/"
    then "(md/${builtins.substring 8 (-1) bootFs.device})" else "";

  tree = ./system-tree;
  drv = name: script: env: derivation ({
    inherit name;
    system = cfg.nixpkgs.hostPlatform;
    builder = busybox;
    args = [ "sh" "-e" "${tree}/${script}" ];
    inherit busybox tree;
    standin = src;
  } // env);

  initrd = drv "initrd-${cfg.networking.hostName}" "build-initrd.sh" {
    kernelVersion = meta.kernelVersion;
    hostName = cfg.networking.hostName;
    modules = concatStringsSep " " initrdModules;
    inherit luksLines mountLines;
    swraid = if boot.swraid.enable or false then "1" else "";
  };
in
{
  options = {
    networking.hostName = mkOption { type = types.str; default = "nixos"; };
    networking.networkmanager = anything;
    nixpkgs.hostPlatform = mkOption { type = types.str; description = "The platform the system runs on, e.g. x86_64-linux."; };
    system.stateVersion = mkOption { type = types.str; };
    system.nixos.release = mkOption { type = types.str; default = "26.05"; };
    system.nixos.label = mkOption { type = types.str; default = "nixlos-example"; };
    system.build.toplevel = mkOption { type = types.package; description = "The system closure nixos-install installs."; };
    system.build.initialRamdisk = mkOption { type = types.package; description = "The stage-1 initrd."; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    environment.variables = mkOption { type = types.attrsOf types.str; default = { }; };
    fileSystems = mkOption { type = types.attrsOf types.anything; default = { }; description = "Mount points: { device; fsType; options; }."; };
    swapDevices = mkOption { type = types.listOf types.anything; default = [ ]; };
    users.users = mkOption { type = types.attrsOf types.anything; default = { }; };
    users.mutableUsers = mkOption { type = types.bool; default = true; };
    security.sudo.enable = mkOption { type = types.bool; default = false; };
    security.sudo.wheelNeedsPassword = mkOption { type = types.bool; default = true; };
    i18n.defaultLocale = mkOption { type = types.str; default = "en_US.UTF-8"; };
    time.timeZone = mkOption { type = types.nullOr types.str; default = null; };
    boot = anything;
    services = anything;
    programs = anything;
    hardware = anything;
    nix.settings = anything;
    home-manager.users = mkOption { type = types.attrsOf types.anything; default = { }; description = "home-manager modules per user."; };
  };

  config.system.build.initialRamdisk = initrd;
  config.system.build.toplevel = drv "nixos-system-${cfg.networking.hostName}-${version}" "build-toplevel.sh" {
    inherit initrd fstab loader version;
    hostName = cfg.networking.hostName;
    kernelVersion = meta.kernelVersion;
    kernelParams = concatStringsSep " " kernelParams;
    timeout = toString (boot.loader.timeout or 1);
    grubDevices = concatStringsSep " " grubDevices;
    inherit grubBoot;
    ageKeyFile = if cfg.sops.age.keyFile == null then "" else cfg.sops.age.keyFile;
    manifest = builtins.toFile "nixos-system-${cfg.networking.hostName}.nix" nixText;
  };
}
