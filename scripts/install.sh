#!/bin/sh
# Install a cme-exec release binary: detect the platform, download the binary, its checksum and the
# checksum's signature, refuse the binary unless the SHA-256 matches and the signature is the
# release key's (checked wherever ssh-keygen can: OpenSSH 8.1 or newer), install it into a
# directory. POSIX sh (Alpine, busybox, macOS), curl or wget, sha256sum or shasum. The GitHub
# Action (action.yml) and the GitLab CI template (ci/gitlab/cme-exec.yml) both use it.
#
#   curl -fsSLO https://github.com/cme-exec/cme-exec/releases/download/v0.1.0/install.sh
#   sh install.sh --version 0.1.0 --dir ~/.local/bin
#
# Options (and the variables that set them):
#   --version X.Y.Z | latest   CME_EXEC_VERSION          default: latest
#   --dir DIR                  CME_EXEC_INSTALL_DIR      default: $HOME/.local/bin
#   --target TRIPLE            CME_EXEC_TARGET           default: detected from uname
#   --base-url URL             CME_EXEC_BASE_URL         default: https://github.com/cme-exec/cme-exec/releases
#   --allowed-signers FILE     CME_EXEC_ALLOWED_SIGNERS  default: the release key below
#   --allow-http               CME_EXEC_ALLOW_HTTP=1     a plain http:// base URL off this machine
#
# Release assets (docs/install.md): BASE/download/vVERSION/cme-exec-TARGET, cme-exec-TARGET.sha256
# (`sha256sum` format) and cme-exec-TARGET.sha256.sig (`ssh-keygen -Y sign`, namespace
# cme-exec-release); `latest` is BASE/latest/download/... Downloads are https only (curl: also
# every redirect); plain http only to a loopback address or with --allow-http.
set -eu

# The release key: the same line as ci/allowed_signers and docs/install.md (a test compares them).
SIGNER=releases@cme-exec
NAMESPACE=cme-exec-release
RELEASE_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsGiCEj1bYiaWLxDOgC8u7PcV0ULZCpii3zUkObxLSH cme-exec releases'

version=${CME_EXEC_VERSION:-latest}
dir=${CME_EXEC_INSTALL_DIR:-${HOME:-/nonexistent}/.local/bin}
target=${CME_EXEC_TARGET:-}
base=${CME_EXEC_BASE_URL:-https://github.com/cme-exec/cme-exec/releases}
signers=${CME_EXEC_ALLOWED_SIGNERS:-}
allow_http=${CME_EXEC_ALLOW_HTTP:-0}

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
    --allowed-signers) [ $# -ge 2 ] || die "--allowed-signers needs a value"; signers=$2; shift 2 ;;
    --allow-http) allow_http=1; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" "usage: install.sh [--version X.Y.Z] [--dir DIR] [--target TRIPLE] [--base-url URL] [--allowed-signers FILE] [--allow-http]" ;;
  esac
done
version=${version#v}
base=${base%/}

# Plain http only where nobody else is on the wire (a loopback address), or when asked for.
is_loopback() { # HOST
  case "$1" in
    localhost | '[::1]') return 0 ;;
    127.*)
      case "$1" in
        *[!0-9.]*) return 1 ;;
        *) return 0 ;;
      esac
      ;;
    *) return 1 ;;
  esac
}
case "$base" in
  https://*) http_ok=0 ;;
  http://*)
    hostport=${base#http://}
    hostport=${hostport%%/*}
    hostport=${hostport##*@}
    case "$hostport" in
      \[*) host=${hostport%%]*}] ;;
      *) host=${hostport%%:*} ;;
    esac
    if is_loopback "$host"; then
      http_ok=1
    elif [ "$allow_http" = 1 ]; then
      http_ok=1
      say "warning: downloading over plain http from $host (--allow-http): anyone on the way can change what arrives; only the checksum and signature checks stand against it"
    else
      die "refusing the plain http base URL $base" \
        "use https://; a mirror you trust on a network you trust needs --allow-http (CME_EXEC_ALLOW_HTTP=1)" \
        "(a loopback address, 127.0.0.1 or localhost, is allowed without it)"
    fi
    ;;
  *) die "the base URL must start with https:// (got $base)" ;;
esac

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
    if [ "$http_ok" = 1 ] && [ "$allow_http" = 1 ]; then
      proto='=http,https' redir='=http,https'
    elif [ "$http_ok" = 1 ]; then
      proto='=http,https' redir='=https'
    else
      proto='=https' redir='=https'
    fi
    curl --proto "$proto" --proto-redir "$redir" --fail --silent --show-error --location \
      --retry 3 --output "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    # wget has no protocol rule for a single download (GNU wget's --https-only is for recursive
    # mode only, busybox has none): the response headers tell where it was redirected, and a
    # redirect to plain http is refused.
    wget --server-response --output-document "$2" "$1" 2>"$tmp/wget.log" || {
      sed 's/^/  wget: /' "$tmp/wget.log" >&2
      return 1
    }
    if [ "$allow_http" != 1 ] && grep -i '^ *location: *http:' "$tmp/wget.log" >/dev/null; then
      rm -f "$2"
      die "$1 redirected to plain http; refused" "a mirror you trust on a network you trust needs --allow-http"
    fi
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

# Prints how the signature was checked, or dies when it is bad or missing. Without an ssh-keygen
# that can verify (OpenSSH 8.1 or newer), says so and leaves the checksum as the only check.
check_signature() { # FILE SIGNATURE-URL
  if ! command -v ssh-keygen >/dev/null 2>&1; then
    signature="not checked (no ssh-keygen here; install openssh-client to check it)"
    return 0
  fi
  if ssh-keygen -Y verify </dev/null 2>&1 | grep -e 'option -- Y' -e "option -- 'Y'" >/dev/null; then
    signature="not checked (this ssh-keygen is older than OpenSSH 8.1)"
    return 0
  fi
  if [ -n "$signers" ]; then
    [ -r "$signers" ] || die "cannot read the allowed signers file $signers"
    cp "$signers" "$tmp/allowed_signers"
  else
    printf '%s namespaces="%s" %s\n' "$SIGNER" "$NAMESPACE" "$RELEASE_KEY" >"$tmp/allowed_signers"
  fi
  fetch "$2" "$1.sig" || die "no signature: download failed: $2" \
    "every release has one; nothing was installed"
  if verified=$(ssh-keygen -Y verify -f "$tmp/allowed_signers" -I "$SIGNER" -n "$NAMESPACE" \
    -s "$1.sig" <"$1" 2>&1); then
    signature="verified: $(printf '%s' "$verified" | tr '\n' ' ' | sed 's/ *$//')"
  else
    die "bad signature on $(basename "$1"): $(printf '%s' "$verified" | tr '\n' ' ')" \
      "the download was tampered with or not signed by the release key; nothing was installed"
  fi
}

mkdir -p "$dir" || die "cannot create the install directory $dir" "choose another with --dir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cme-exec-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

say "downloading $url"
fetch "$url" "$tmp/$asset" || die "download failed: $url" "check --version ($version) and your network or proxy"
fetch "$url.sha256" "$tmp/$asset.sha256" || die "no checksum: download failed: $url.sha256" \
  "every release has one; nothing was installed"
check_signature "$tmp/$asset.sha256" "$url.sha256.sig"

# One line, `HASH  NAME`, naming this asset: a signed checksum of another target is no use here.
read -r expected name rest <"$tmp/$asset.sha256" || true
case "$expected" in
  [0-9a-f]*) ;;
  *) die "$asset.sha256 is not a checksum file" ;;
esac
if [ "${name#\*}" != "$asset" ] || [ -n "$rest" ] || [ "$(wc -l <"$tmp/$asset.sha256")" -ne 1 ]; then
  die "$asset.sha256 is not the checksum of $asset" "nothing was installed"
fi
actual=$(sha256_of "$tmp/$asset")
if [ "${#expected}" -ne 64 ] || [ "$expected" != "$actual" ]; then
  die "checksum mismatch for $asset: expected $expected, got $actual" \
    "the download is corrupt or was tampered with; nothing was installed"
fi

chmod 0755 "$tmp/$asset"
# Same directory, then rename: a running cme-exec is never overwritten in place.
cp "$tmp/$asset" "$dir/.cme-exec.new.$$"
mv -f "$dir/.cme-exec.new.$$" "$dir/cme-exec"
say "installed $dir/cme-exec ($target, sha256 $actual)"
say "signature $signature"
case ":${PATH:-}:" in
  *":$dir:"*) ;;
  *) say "note: $dir is not on PATH" ;;
esac
