#!/usr/bin/env bash
# The whole test suite: installs what it needs, then
#   1. the float64 reference regenerates every fixture and tokenizer case and
#      checks that the committed copies still match;
#   2. a Release build with warnings as errors, and every test under CTest;
#   3. `hymba serve` against real clients: the openai npm package, the chat
#      page in headless Chromium, a load test of 16 streaming clients x 50
#      requests checked against the same requests served alone;
#   4. one clang build with AddressSanitizer and UndefinedBehaviorSanitizer:
#      the same tests, then every fuzz target for 10 s with libFuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# "== step" headings, each closed by the seconds it took (CI has a time budget).
step() {
  if [[ -n ${step_name:-} ]]; then echo "-- $step_name: $((SECONDS - step_started)) s"; fi
  step_name=$1
  step_started=$SECONDS
  if [[ -n $step_name ]]; then echo "== $step_name"; fi
}

step "Dependencies (apt, scripts/install_deps.sh)"
scripts/install_deps.sh --with-reference --with-server-tests --with-fuzz

step "Float64 reference: regenerate fixtures and tokenizer cases, compare with the committed ones"
/usr/bin/python3 tests/reference/make_fixtures.py --check
/usr/bin/python3 tests/reference/tokenizer_cases.py --check
/usr/bin/python3 tests/reference/template_cases.py --check
/usr/bin/python3 tests/reference/check_ref.py

step "Release build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

step "Server with real clients (tests/server/)"
(cd tests/server && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/server && node --test --test-concurrency=1 openai_client.test.mjs chat_page.test.mjs)
node tests/server/load_test.mjs --clients 16 --requests 50

step "AddressSanitizer + UndefinedBehaviorSanitizer (clang): every test, then fuzzing (scripts/fuzz.sh)"
scripts/fuzz.sh --tests -t 10
step ""
echo "-- total: $SECONDS s"
