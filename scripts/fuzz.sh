#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) with libFuzzer under
# AddressSanitizer and UndefinedBehaviorSanitizer for a chosen time each:
#
#   scripts/fuzz.sh [--tests] [-t SECONDS] [TARGET ...]      (default 60 s; targets: fuzz/CMakeLists.txt)
#
# Builds build-fuzz/ with clang, --tests also builds the whole test suite there
# and runs it under CTest first (scripts/test.sh does: one sanitizer build
# serves both, instead of a second one with GCC). Keeps a growing corpus per target in
# build-fuzz/corpus/ (seeded from fuzz/corpus/, the real Hymba-1.5B files in
# ../shared/hymba-1.5b/ and GGUF conversions of the test fixtures), runs up to
# one target per core at a time and prints a table of executions. A crash, a
# leak, undefined behaviour, an input slower than 10 s or one needing more
# than 2 GB is a finding: its input lands in build-fuzz/findings/TARGET/ and
# the script fails. Add each one, once fixed, to fuzz/corpus/TARGET/ as
# regression-NAME so that ctest replays it in every build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=60
with_tests=false
while (($#)); do
  case "$1" in
    --tests) with_tests=true; shift ;;
    -t)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: -t needs a whole number of seconds, got '${2:-}'" >&2; exit 2; }
      seconds=$2
      shift 2
      ;;
    -*) echo "fuzz.sh: unknown option $1 (--tests, -t SECONDS)" >&2; exit 2 ;;
    *) break ;;
  esac
done
read -r -a all_targets <<<"$(sed -n 's/^set(HYMBA_FUZZ_TARGETS \(.*\))$/\1/p' fuzz/CMakeLists.txt)"
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
for target in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $target "* ]] || { echo "fuzz.sh: unknown target '$target' (${all_targets[*]})" >&2; exit 2; }
done

scripts/install_deps.sh --with-fuzz

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== Fuzz build (clang, libFuzzer, ASan + UBSan)"
# -g1 (line tables, enough for the sanitizers' stack traces) compiles much
# faster than full debug information.
CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DHYMBA_FUZZ=ON -DHYMBA_BUILD_TESTS="$with_tests" \
  -DHYMBA_BUILD_BENCHMARKS=OFF >/dev/null
if $with_tests; then
  cmake --build build-fuzz -j "$(nproc)"
  echo "== Tests under ASan + UBSan"
  ctest --test-dir build-fuzz --output-on-failure -j "$(nproc)"
else
  cmake --build build-fuzz -j "$(nproc)" --target hymba_cli "${targets[@]/#/fuzz_}"
fi

echo "== Seed corpora"
corpus=build-fuzz/corpus
mkdir -p "$corpus"
copy_new() {  # copy_new FILE DEST: keeps what the corpus already has (cp -n's exit status varies by version)
  [[ -e "$2" ]] || cp "$1" "$2"
}
for target in "${all_targets[@]}"; do
  mkdir -p "$corpus/$target" "build-fuzz/findings/$target"
  for seed in fuzz/corpus/"$target"/*; do copy_new "$seed" "$corpus/$target/$(basename "$seed")"; done
done
shared=../shared/hymba-1.5b
if [[ -d "$shared" ]]; then
  copy_new "$shared/config.json" "$corpus/config/real-config.json"
  /usr/bin/python3 - "$shared/tokenizer_config.json" "$corpus/chat_template/real-template" <<'PY'
import json, sys
template = json.load(open(sys.argv[1]))["chat_template"]
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And now?"}]
open(sys.argv[2], "wb").write(template.encode() + b"\0" + json.dumps(messages).encode())
PY
fi
for type in f32 q8_0 q4_0; do  # with the real tokenizer, chat template and every tensor type
  [[ -f "$corpus/gguf/real_tokenizer-$type" ]] || build-fuzz/hymba convert tests/data/fixtures/real_tokenizer_bf16 \
    -o "$corpus/gguf/real_tokenizer-$type" --type "$type" >build-fuzz/convert.log 2>&1 || { cat build-fuzz/convert.log; exit 1; }
done

echo "== Fuzzing ${targets[*]} for $seconds s each"
run_target() {  # leaves the fuzzer's exit status in build-fuzz/fuzz_TARGET.status
  local target=$1 seconds=$2 status=0
  "build-fuzz/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/findings/$target/" "build-fuzz/corpus/$target" >"build-fuzz/fuzz_$target.log" 2>&1 ||
    status=$?
  echo "$status" >"build-fuzz/fuzz_$target.status"
}
export -f run_target
for target in "${targets[@]}"; do rm -f "build-fuzz/fuzz_$target.log" "build-fuzz/fuzz_$target.status"; done
status=0
printf '%s\n' "${targets[@]}" | xargs -P "$(nproc)" -I{} bash -c 'run_target {} '"$seconds" || status=1

echo
echo "| target | seconds | executions | exec/s | corpus | result |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
for target in "${targets[@]}"; do
  log="build-fuzz/fuzz_$target.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -1 || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" 2>/dev/null | tail -1 || true)
  files=$(find "$corpus/$target" -type f | wc -l)
  fuzzer_status=$(cat "build-fuzz/fuzz_$target.status" 2>/dev/null || echo "did not run")
  if [[ "$fuzzer_status" == 0 ]]; then
    result=clean
  else
    finding=$(ls -t "build-fuzz/findings/$target" | head -1)
    result="FINDING (exit $fuzzer_status): ${finding:-no input saved}, see $log"
    status=1
  fi
  echo "| $target | $seconds | ${runs:-?} | ${rate:-?} | $files | $result |"
done
exit $status
