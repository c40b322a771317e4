#!/usr/bin/env bash
# The main job on what the project ships: builds hymba, shows what Hymba-1.5B
# costs (its real config), tokenizes a chat prompt with the real tokenizer,
# and computes next-token logits with a small Hymba checkpoint from tests/data.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

set -x
build/hymba info -m tests/data/hymba-1.5b
build/hymba tokenize -m tests/data/hymba-1.5b \
  --text $'<extra_id_0>System\n\n<extra_id_1>User\nHello!\n<extra_id_1>Assistant\n'
model=tests/data/fixtures/real_tokenizer_bf16
tokens=$(build/hymba tokenize -m "$model" --text "The quick brown fox jumps over the lazy" | tr -d '[]')
build/hymba logits -m "$model" --tokens "$tokens" --top 5
