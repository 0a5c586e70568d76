# lib.sh - shared by scripts/demo, scripts/test and scripts/bench (sourced).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SECURITOR_SHARED:-$ROOT/../shared}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# need_packages PKG...: installs the Debian packages that are missing, with
# apt-get when we are root; otherwise prints the exact command and stops.
need_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "Missing packages: ${missing[*]}" >&2
    echo "Run:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

BUILD_PACKAGES=(build-essential cmake pkg-config libssl-dev libcjson-dev uuid-dev libsqlite3-dev python3)
# The libFuzzer targets (scripts/fuzz): clang with libFuzzer, and llvm-16 for
# llvm-profdata/llvm-cov (coverage) and llvm-symbolizer (stack traces).
FUZZ_PACKAGES=(clang-16 libfuzzer-16-dev libclang-rt-16-dev llvm-16)

# build DIR [cmake args...]: configures (once) and builds.
build() {
  local dir=$1; shift
  cmake -S "$ROOT" -B "$dir" -DSECURITOR_SHARED_DIR="$SHARED" "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)" >/dev/null
}
