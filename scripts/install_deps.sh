#!/usr/bin/env bash
# Installs the Debian 12 packages hymba.cpp needs to build, test and run its
# reference. Skips apt-get when everything is already there.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libsentencepiece-dev nlohmann-json3-dev libcli11-dev libhwy-dev
  libopenblas-dev libgtest-dev libgmock-dev libbenchmark-dev libcpp-httplib-dev
)
for option in "$@"; do
  case "$option" in
    # The float64 PyTorch reference and the tokenizer oracle (tests/reference/).
    --with-reference) packages+=(python3 python3-numpy python3-torch python3-sentencepiece python3-jinja2) ;;
    # libFuzzer and clang's sanitizers (scripts/fuzz.sh).
    --with-fuzz) packages+=(clang libclang-rt-14-dev) ;;
    # The server's client tests (tests/server/): Chromium for the chat page,
    # Node.js and npm for the openai package unless a Node.js is already here.
    --with-server-tests)
      packages+=(chromium)
      command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
      ;;
    *) echo "install_deps.sh: unknown option $option (--with-reference, --with-fuzz, --with-server-tests)" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
echo "Installing: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
