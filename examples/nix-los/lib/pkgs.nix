# Package placeholders: this example cannot import nixpkgs, so `pkgs.git` is a
# small attribute set naming the package. Using an unknown package is an
# evaluation error, as with nixpkgs.
{ system }:
let
  names = [
    "bash" "bat" "curl" "direnv" "eza" "fd" "fzf" "gcc" "git" "gnumake" "go"
    "htop" "jq" "neovim" "nodejs" "python3" "ripgrep" "rustup" "starship"
    "tmux" "vim" "vscode" "wget" "zsh"
  ];
  placeholder = name: { type = "nixlos-placeholder-package"; inherit name system; pname = name; };
in
builtins.listToAttrs (map (name: { inherit name; value = placeholder name; }) names)
// { inherit system; }
