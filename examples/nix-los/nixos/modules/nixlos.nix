# Options nixlos reads from a host's configuration (the manifest exports them).
{ lib, ... }:
{
  options.nixlos.diskRules = lib.mkOption {
    type = lib.types.attrsOf lib.types.str;
    default = { };
    description = ''
      Which physical disk each disko layout disk is, by rules on what
      `installer detect` reports, e.g. { main = "match:size>=100G,bus=nvme"; }
      (see `go doc github.com/nixlos/nixlos/diskrules`). Used when neither the
      kernel command line nor the PXE map names the disk.
    '';
  };
}
