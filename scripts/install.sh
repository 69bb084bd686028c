#!/bin/sh
# Install a cme-exec release binary: detect the platform, download the binary and its checksum,
# refuse it unless the SHA-256 matches, install it into a directory. POSIX sh (Alpine, busybox,
# macOS), curl or wget, sha256sum or shasum. The GitHub Action (action.yml) and the GitLab CI
# template (ci/gitlab/cme-exec.yml) both use it.
#
#   curl -fsSLO https://github.com/cme-exec/cme-exec/releases/download/v0.1.0/install.sh
#   sh install.sh --version 0.1.0 --dir ~/.local/bin
#
# Options (and the variables that set them):
#   --version X.Y.Z | latest   CME_EXEC_VERSION      default: latest
#   --dir DIR                  CME_EXEC_INSTALL_DIR  default: $HOME/.local/bin
#   --target TRIPLE            CME_EXEC_TARGET       default: detected from uname
#   --base-url URL             CME_EXEC_BASE_URL     default: https://github.com/cme-exec/cme-exec/releases
#
# Release assets (docs/install.md): BASE/download/vVERSION/cme-exec-TARGET and
# cme-exec-TARGET.sha256 (`sha256sum` format); `latest` is BASE/latest/download/...
set -eu

version=${CME_EXEC_VERSION:-latest}
dir=${CME_EXEC_INSTALL_DIR:-${HOME:-/nonexistent}/.local/bin}
target=${CME_EXEC_TARGET:-}
base=${CME_EXEC_BASE_URL:-https://github.com/cme-exec/cme-exec/releases}

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
  printf 'install.sh: error: %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --version) [ $# -ge 2 ] || die "--version needs a value"; version=$2; shift 2 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
    --target) [ $# -ge 2 ] || die "--target needs a value"; target=$2; shift 2 ;;
    --base-url) [ $# -ge 2 ] || die "--base-url needs a value"; base=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" "usage: install.sh [--version X.Y.Z] [--dir DIR] [--target TRIPLE] [--base-url URL]" ;;
  esac
done
version=${version#v}

if [ -z "$target" ]; then
  os=$(uname -s)
  arch=$(uname -m)
  case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "no cme-exec release for the architecture $arch" "build from source: cargo install --locked --git https://github.com/cme-exec/cme-exec" ;;
  esac
  case "$os" in
    Linux) target=$arch-unknown-linux-musl ;;
    Darwin) target=$arch-apple-darwin ;;
    *) die "no cme-exec release for $os (Linux and macOS only; Windows is not supported)" ;;
  esac
fi

asset=cme-exec-$target
if [ "$version" = latest ]; then
  url=$base/latest/download/$asset
else
  url=$base/download/v$version/$asset
fi

fetch() { # URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl --fail --silent --show-error --location --retry 3 --output "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget --quiet --output-document "$2" "$1"
  else
    die "neither curl nor wget is installed" "install one of them (apk add curl / apt-get install curl)"
  fi
}

sha256_of() { # FILE
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  elif command -v openssl >/dev/null 2>&1; then
    openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  else
    die "no sha256sum, shasum or openssl to check the download" "install coreutils (or perl's shasum)"
  fi
}

mkdir -p "$dir" || die "cannot create the install directory $dir" "choose another with --dir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cme-exec-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

say "downloading $url"
fetch "$url" "$tmp/$asset" || die "download failed: $url" "check --version ($version) and your network or proxy"
fetch "$url.sha256" "$tmp/$asset.sha256" || die "download failed: $url.sha256"

expected=$(cut -d' ' -f1 <"$tmp/$asset.sha256")
actual=$(sha256_of "$tmp/$asset")
case "$expected" in
  [0-9a-f]*) ;;
  *) die "$asset.sha256 is not a checksum file" ;;
esac
if [ "${#expected}" -ne 64 ] || [ "$expected" != "$actual" ]; then
  die "checksum mismatch for $asset: expected $expected, got $actual" \
    "the download is corrupt or was tampered with; nothing was installed"
fi

chmod 0755 "$tmp/$asset"
# Same directory, then rename: a running cme-exec is never overwritten in place.
cp "$tmp/$asset" "$dir/.cme-exec.new.$$"
mv -f "$dir/.cme-exec.new.$$" "$dir/cme-exec"
say "installed $dir/cme-exec ($target, sha256 $actual)"
case ":${PATH:-}:" in
  *":$dir:"*) ;;
  *) say "note: $dir is not on PATH" ;;
esac
