#!/usr/bin/env bash
# The main job on what the project ships: builds hymba, generates text with
# the small Hymba trained by the project (models/hymba-kjv-tiny), and shows what
# Hymba-1.5B costs in memory (its real config.json).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

set -x
build/hymba generate -m models/hymba-kjv-tiny -p "And God said unto Moses," -n 96 --seed 42
build/hymba info -m tests/data/hymba-1.5b
