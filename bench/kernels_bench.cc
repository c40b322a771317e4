// Google Benchmark of each kernel at Hymba-1.5B's shapes. Decode products
// stream their weights from memory, as every decode step does, and
// BM_ReadBandwidth measures `hymba bench`'s decode yardstick in the same run;
// the counters report bytes/s (decode) and FLOP/s (prefill).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <bit>
#include <random>
#include <type_traits>
#include <vector>

#include "core/cache_line_vector.h"
#include "core/huge_page_buffer.h"
#include "core/interleaved.h"
#include "hymba/bench.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/matmul_int8.h"
#include "kernels/quantize.h"
#include "kernels/scan.h"

namespace hymba {
namespace {

// What a decode product streams through in one iteration: copies of its
// matrix, one after another, 16 times the 32 MB L3 of a Zen 4 CCX. One matrix
// read again and again would partly come from L3 (q4_0's 32000 x 1600 is
// 29 MB), where no decode step finds its weights.
constexpr size_t kStreamBytes = size_t{512} << 20;

// `copies` copies of one random matrix, in huge-page memory, as a loaded
// model holds its weights (a decoding step's single stream through 4 KB
// pages is bound by TLB misses).
HugePageBuffer RandomMatrix(DType type, Layout layout, size_t rows, size_t cols, size_t copies = 1) {
  const size_t matrix_bytes = rows * RowBytes(type, cols);
  HugePageBuffer memory(copies * matrix_bytes);
  const std::span<std::byte> bytes = memory.bytes().first(matrix_bytes);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> row(cols);
  for (size_t r = 0; r < rows; ++r) {
    for (float& value : row) value = normal(rng);
    QuantizeRow(type, row, &bytes[r * RowBytes(type, cols)]);
  }
  InterleaveRows(type, layout, rows, cols, bytes);  // as a loaded model holds them
  for (size_t c = 1; c < copies; ++c) std::copy(bytes.begin(), bytes.end(), memory.bytes().begin() + c * matrix_bytes);
  return memory;
}

// `hymba bench`'s decode yardstick: each thread sums its slice of 512 MB in
// huge pages, the median of 5 reads. args: threads.
void BM_ReadBandwidth(benchmark::State& state) {
  for (auto _ : state) {
    const double gb_per_second = MeasureReadBandwidth(static_cast<size_t>(state.range(0)), kStreamBytes, 5);
    state.SetIterationTime(static_cast<double>(kStreamBytes) / (gb_per_second * 1e9));
  }
  state.counters["bytes/s"] =
      benchmark::Counter(static_cast<double>(kStreamBytes), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

// args: type, rows, cols, tokens, threads, bf16 products (compute type bf16)
void BM_MatMul(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const auto rows = static_cast<size_t>(state.range(1)), cols = static_cast<size_t>(state.range(2));
  const auto tokens = static_cast<size_t>(state.range(3));
  ThreadPool pool(static_cast<size_t>(state.range(4)));
  const Layout layout = LoadedLayout(type, state.range(5) != 0);
  const size_t matrix_bytes = rows * RowBytes(type, cols);
  const size_t copies = tokens == 1 ? (kStreamBytes + matrix_bytes - 1) / matrix_bytes : 1;
  const HugePageBuffer matrices = RandomMatrix(type, layout, rows, cols, copies);
  std::vector<float> x(tokens * cols, 0.5f), y(tokens * rows);
  for (auto _ : state) {
    for (size_t c = 0; c < copies; ++c) {
      MatMul({type, matrices.bytes().data() + c * matrix_bytes, rows, cols, layout}, x.data(), tokens, y.data(), pool);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(DTypeName(type)) + (layout == Layout::kBf16Pairs ? " bf16 compute" : ""));
  state.counters["bytes/s"] =
      benchmark::Counter(static_cast<double>(copies * matrix_bytes), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(copies * rows * cols * tokens),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void DecodeAndPrefillShapes(benchmark::internal::Benchmark* b) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kQ8_0, DType::kQ4_0}) {
    const auto type = static_cast<int>(dtype);
    for (int threads : {1, 2}) {
      b->Args({type, 32000, 1600, 1, threads, 0});  // the head's shape, streamed from memory as in a decode step
      b->Args({type, 5504, 1600, 512, threads, 0});  // MLP up projection over a 512-token prompt
      b->Args({type, 1600, 5504, 512, threads, 0});  // MLP down projection
      if (dtype == DType::kF16 || dtype == DType::kBF16) {
        b->Args({type, 3200, 100, 1, threads, 0});  // dt_proj in a decode step (f16 beside quantized weights)
      }
    }
  }
  const auto bf16 = static_cast<int>(DType::kBF16);
  for (int threads : {1, 2}) {
    b->Args({bf16, 32000, 1600, 1, threads, 1});
    b->Args({bf16, 5504, 1600, 512, threads, 1});
    b->Args({bf16, 1600, 5504, 512, threads, 1});
  }
}
BENCHMARK(BM_MatMul)->Apply(DecodeAndPrefillShapes)->UseRealTime()->Unit(benchmark::kMillisecond);

// args: type, kernel (0 portable, 1 AVX2, 2 VNNI), tokens; one thread, a
// 4096 x 1600 matrix: each int8 kernel alone, including the ones this CPU
// would not pick.
void BM_Int8Kernel(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const auto kernel = static_cast<Int8Kernel>(state.range(1));
  if ((kernel == Int8Kernel::kAvx2 && !CpuHasAvx2()) || (kernel == Int8Kernel::kVnni && !CpuHasVnni())) {
    state.SkipWithError("not supported by this CPU");
    return;
  }
  const size_t rows = 4096, cols = 1600, tokens = static_cast<size_t>(state.range(2));
  const HugePageBuffer matrix = RandomMatrix(type, Layout::kGroups, rows, cols);
  const MatView w{type, matrix.bytes().data(), rows, cols, Layout::kGroups};
  std::vector<float> x(tokens * cols, 0.5f), y(tokens * rows);
  Int8Activations activations;
  QuantizeActivations(type, x.data(), tokens, cols, activations, nullptr, kernel);
  for (auto _ : state) {
    MatMulInt8(w, activations, y.data(), rows, 0, rows / kInterleaveRows, kernel);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(DTypeName(type)) + (kernel == Int8Kernel::kVnni   ? " VNNI"
                                                 : kernel == Int8Kernel::kAvx2 ? " AVX2"
                                                                               : " portable"));
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(rows * cols * tokens), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Int8Kernel)
    ->ArgsProduct({{static_cast<int>(DType::kQ8_0), static_cast<int>(DType::kQ4_0)}, {0, 1, 2}, {1, 64}})
    ->Unit(benchmark::kMillisecond);

// args: tokens (hidden 1600): the 8-bit activations of the int8 products.
void BM_QuantizeActivations(benchmark::State& state) {
  const auto tokens = static_cast<size_t>(state.range(0));
  const size_t cols = 1600;
  std::vector<float> x(tokens * cols);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& value : x) value = normal(rng);
  ThreadPool pool(1);
  Int8Activations out;
  for (auto _ : state) {
    QuantizeActivations(DType::kQ8_0, x.data(), tokens, cols, out, &pool);
    benchmark::DoNotOptimize(out.quants.data());
  }
  state.counters["values/s"] =
      benchmark::Counter(static_cast<double>(tokens * cols), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_QuantizeActivations)->Arg(1)->Arg(512);

// args: steps, threads (d_inner 3200, d_state 16)
void BM_SelectiveScan(benchmark::State& state) {
  const size_t d_inner = 3200, d_state = 16, steps = static_cast<size_t>(state.range(0));
  ThreadPool pool(static_cast<size_t>(state.range(1)));
  std::vector<float> x(steps * d_inner, 0.1f), delta_pre(steps * d_inner, -3.0f), bias(d_inner, 0.0f);
  std::vector<float> a(d_state * d_inner, -1.0f), d_skip(d_inner, 1.0f), bc(steps * 2 * d_state, 0.2f);
  std::vector<float> z(steps * d_inner, 0.3f), h(d_state * d_inner, 0.0f), out(steps * d_inner);
  const ScanInputs in{.d_inner = d_inner, .d_state = d_state, .steps = steps, .x = x.data(),
                      .delta_pre = delta_pre.data(), .dt_bias = bias.data(), .a = a.data(), .d_skip = d_skip.data(),
                      .b = bc.data(), .c = bc.data() + d_state, .bc_stride = 2 * d_state, .z = z.data(),
                      .z_stride = d_inner, .state = h.data(), .out = out.data()};
  for (auto _ : state) {
    SelectiveScan(in, pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["steps/s"] = benchmark::Counter(static_cast<double>(steps), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_SelectiveScan)->Args({1, 1})->Args({512, 1})->Args({512, 2})->UseRealTime();

// One decode step's scan as the engine meets it: state and A come from
// memory, the weights read since the previous token having evicted them.
// Each iteration takes the next of 256 layers' (state, A) pairs, 105 MB in
// all. args: threads.
void BM_SelectiveScanDecode(benchmark::State& state) {
  const size_t d_inner = 3200, d_state = 16, layers = 256;
  ThreadPool pool(static_cast<size_t>(state.range(0)));
  std::vector<float> x(d_inner, 0.1f), delta_pre(d_inner, -3.0f), bias(d_inner, 0.0f), d_skip(d_inner, 1.0f);
  std::vector<float> bc(2 * d_state, 0.2f), z(d_inner, 0.3f), out(d_inner);
  std::vector<std::vector<float>> a(layers, std::vector<float>(d_state * d_inner, -1.0f));
  std::vector<std::vector<float>> h(layers, std::vector<float>(d_state * d_inner, 0.0f));
  size_t layer = 0;
  for (auto _ : state) {
    SelectiveScan({.d_inner = d_inner, .d_state = d_state, .steps = 1, .x = x.data(), .delta_pre = delta_pre.data(),
                   .dt_bias = bias.data(), .a = a[layer].data(), .d_skip = d_skip.data(), .b = bc.data(),
                   .c = bc.data() + d_state, .bc_stride = 2 * d_state, .z = z.data(), .z_stride = d_inner,
                   .state = h[layer].data(), .out = out.data()},
                  pool);
    benchmark::DoNotOptimize(out.data());
    layer = (layer + 1) % layers;
  }
}
BENCHMARK(BM_SelectiveScanDecode)->Arg(1)->Arg(2)->UseRealTime();

// The 5 query heads of one K/V head (args: heads) over a full sliding window
// plus the meta tokens, at Hymba-1.5B's head sizes (64 for q.k, 128 for v).
void BM_Attend(benchmark::State& state) {
  const size_t dqk = 64, dv = 128, keys = 1152, heads = static_cast<size_t>(state.range(0));
  CacheLineVector<float> k(keys * dqk + kKeyPadding<float>, 0.2f), v(keys * dv, 0.3f);
  std::vector<float> q(heads * dqk, 0.1f), scores(heads * keys), out(heads * dv);
  std::vector<const float*> key_rows(keys), value_rows(keys);
  for (size_t m = 0; m < keys; ++m) key_rows[m] = &k[KeyTileIndex<float>(m, dqk)], value_rows[m] = &v[ValueTileIndex<float>(m, dv)];
  for (auto _ : state) {
    Attend(q.data(), heads, key_rows.data(), value_rows.data(), keys, dqk, dv, 0.125f, scores.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["head-keys/s"] =
      benchmark::Counter(static_cast<double>(heads * keys), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Attend)->Arg(1)->Arg(5);

template <typename Element>
Element ToElement(float value) {
  if constexpr (std::is_same_v<Element, float>) {
    return value;
  } else if constexpr (std::is_same_v<Element, int8_t>) {
    return static_cast<int8_t>(value * 100);  // q8: every byte alike, scales (0x14141414) included
  } else {
    return std::bit_cast<Element>(F32ToF16(value));
  }
}

// One decode step's attention over a sliding window (meta + 1025 positions)
// as the engine runs it: each K/V head's keys and values are one stream in
// the cache, taken in ranges of 256 keys whose results merge. Every K/V head
// of the argument's layers: 1 layer's cache (4.4 MB in f32, 2.2 in f16, 1.2
// in q8) stays in the caches, L3 beyond the 1 MB L2 of a Zen 4 core, so the
// kernel's arithmetic shows; 64 layers' come from memory as they do at
// depth; one thread. bytes/s counts the K/V read. Cache type f32, f16 or q8
// (int8, with both scales in the key's tile).
template <typename Element>
void BM_AttendDecode(benchmark::State& state) {
  const size_t dqk = 64, dv = 128, kv_heads = 5, group = 5, keys = 1153, range = 256;
  const auto layers = static_cast<size_t>(state.range(0));
  const size_t key_planes = KeyPlanes<Element>(dqk);
  const size_t parts = (keys + range - 1) / range;
  const Element key_value = ToElement<Element>(0.2f), value_value = ToElement<Element>(0.3f);
  const size_t head_tiles = (keys + kKeyTile - 1) / kKeyTile * kKeyTile;  // one head's slots in whole tiles
  std::vector<CacheLineVector<Element>> k(layers, CacheLineVector<Element>(kv_heads * head_tiles * key_planes + kKeyPadding<Element>, key_value));
  std::vector<CacheLineVector<Element>> v(layers, CacheLineVector<Element>(kv_heads * head_tiles * dv, value_value));
  std::vector<float> q(group * dqk, 0.1f), scores(group * range), part_out(parts * group * dv), out(group * dv);
  std::vector<SoftmaxStats> stats(parts * group);
  std::vector<const Element*> key_rows(keys), value_rows(keys);
  for (auto _ : state) {
    for (size_t layer = 0; layer < layers; ++layer) {
      for (size_t g = 0; g < kv_heads; ++g) {
        for (size_t m = 0; m < keys; ++m) {
          key_rows[m] = &k[layer][g * head_tiles * key_planes + KeyTileIndex<Element>(m, key_planes)];
          value_rows[m] = &v[layer][g * head_tiles * dv + ValueTileIndex<Element>(m, dv)];
        }
        for (size_t p = 0; p < parts; ++p) {
          const size_t first = p * range, size = std::min(keys, first + range) - first;
          // The next range's keys, as a decode step passes them (this head's only).
          const size_t next_size = p + 1 < parts ? std::min(keys, first + 2 * range) - first - range : 0;
          Attend(q.data(), group, &key_rows[first], &value_rows[first], size, dqk, dv, 0.125f, scores.data(),
                 &part_out[p * group * dv], &stats[p * group], {&key_rows[first + size], next_size});
        }
        for (size_t j = 0; j < group; ++j) {
          MergeAttention(&part_out[j * dv], group * dv, &stats[j], group, parts, dv, &out[j * dv]);
        }
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  const size_t bytes = layers * kv_heads * keys * (key_planes + dv) * sizeof(Element);
  state.counters["bytes/s"] = benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AttendDecode<float>)->Arg(1)->Arg(64)->UseRealTime();
BENCHMARK(BM_AttendDecode<hwy::float16_t>)->Arg(1)->Arg(64)->UseRealTime();
BENCHMARK(BM_AttendDecode<int8_t>)->Arg(1)->Arg(64)->UseRealTime();

}  // namespace
}  // namespace hymba

BENCHMARK_MAIN();
