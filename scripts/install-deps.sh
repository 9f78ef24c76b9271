#!/usr/bin/env bash
# Installs the Debian packages cachet builds with. Idempotent: does nothing when they are
# all there. Used by the README commands and by CI. `install-deps.sh fuzz` also installs
# clang and its libFuzzer runtime, for the fuzz preset (scripts/fuzz.sh).
set -euo pipefail
PACKAGES=(g++ cmake ninja-build ccache pkg-config
          libfmt-dev nlohmann-json3-dev libxxhash-dev libpcre2-dev libutf8proc-dev
          libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev python3-numpy
          libcpp-httplib-dev prometheus-cpp-dev python3-prometheus-client)
if [ "${1:-}" = "fuzz" ]; then PACKAGES+=(clang libclang-rt-14-dev); fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
