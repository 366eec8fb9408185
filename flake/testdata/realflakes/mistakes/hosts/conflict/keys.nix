{
  # Conflicts with default.nix: two definitions at the same priority.
  sops.age.keyFile = "/etc/age.key";
}
