{ ... }:
{
  imports = [ ./disko.nix ];
  networking.hostName = "keytype";
  # A type error: sops-nix wants a path string.
  sops.age.keyFile = 42;
}
