// The forward pass, top to bottom. Buffers carry their shape in a comment;
// `rows` spans every sequence of the batch, t indexes the rows of one segment,
// and position = state.positions + t counts the meta tokens (meta at 0..M-1,
// text token i at M+i).
#include "model/forward.h"

#include <algorithm>
#include <cmath>

#include "kernels/activations.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quantize.h"
#include "kernels/scan.h"

namespace hymba {

template <typename T>
KvCacheOf<T>::KvCacheOf(const Config& config, int owner)
    : kv_heads_(static_cast<size_t>(config.num_key_value_heads)),
      dqk_(static_cast<size_t>(config.head_dim_qk)),
      dv_(static_cast<size_t>(config.head_dim_v)),
      key_planes_(KeyPlanes<T>(dqk_)),
      meta_(config.num_memory_tokens),
      ring_(config.HasSlidingWindow() && !config.KeepsFullHistory(owner) ? config.sliding_window + 1 : 0) {
  for (size_t lane = 0; lane < kKeyTile; ++lane) value_lane_offsets_[lane] = ValueTileIndex<T>(lane, dv_);
}

template <typename T>
size_t KvCacheOf<T>::Slot(int64_t position) const {
  if (ring_ == 0 || position < meta_) return static_cast<size_t>(position);
  return static_cast<size_t>(meta_ + (position - meta_) % ring_);
}

namespace {

// One stored element of a K/V row whose q8 scale (if any) is `scale`.
template <typename T>
T Encode(float value, [[maybe_unused]] float scale) {
  if constexpr (std::is_same_v<T, float>) {
    return value;
  } else if constexpr (std::is_same_v<T, int8_t>) {
    return QuantizeQ8(value, scale);
  } else {
    return std::bit_cast<T>(F32ToF16(value));
  }
}

}  // namespace

template <typename T>
void KvCacheOf<T>::Append(const float* key, const float* value) {
  const auto index = static_cast<size_t>(positions_ - committed_);
  if (index % kKeyTile == 0) {  // a new tile of positions
    const size_t tiles = index / kKeyTile + 1;
    scratch_keys_.resize(tiles * kKeyTile * kv_heads_ * key_planes_ + kKeyPadding<T>);
    scratch_values_.resize(tiles * kKeyTile * kv_heads_ * dv_);
  }
  for (size_t head = 0; head < kv_heads_; ++head) {
    const float* head_key = &key[head * dqk_];
    const float* head_value = &value[head * dv_];
    T* stored_key = &scratch_keys_[ScratchKeyIndex(index, head)];
    T* stored_value = &scratch_values_[ScratchValueIndex(index, head)];
    float key_scale = 0.0f, value_scale = 0.0f;
    if constexpr (std::is_same_v<T, int8_t>) {
      key_scale = Q8RowScale(head_key, dqk_);
      value_scale = Q8RowScale(head_value, dv_);
      StoreQ8Scale(key_scale, stored_key, Q8KeyScalePlane(dqk_));
      StoreQ8Scale(value_scale, stored_key, Q8ValueScalePlane(dqk_));
      if (dqk_ % 2 != 0) stored_key[KeyPlaneOffset<T>(dqk_)] = 0;  // the pair's missing dimension
    }
    for (size_t i = 0; i < dqk_; ++i) stored_key[KeyPlaneOffset<T>(i)] = Encode<T>(head_key[i], key_scale);
    for (size_t i = 0; i < dv_; ++i) stored_value[ValueElementOffset<T>(i, dv_)] = Encode<T>(head_value[i], value_scale);
  }
  ++positions_;
}

template <typename T>
size_t KvCacheOf<T>::ScratchKeyIndex(size_t index, size_t kv_head) const {
  return KeyTileIndex<T>(index, kv_heads_ * key_planes_) + kv_head * kKeyTile * key_planes_;
}

template <typename T>
size_t KvCacheOf<T>::ScratchValueIndex(size_t index, size_t kv_head) const {
  return (index / kKeyTile * kv_heads_ + kv_head) * kKeyTile * dv_ + ValueTileIndex<T>(index % kKeyTile, dv_);
}

template <typename T>
size_t KvCacheOf<T>::BlockKeyIndex(size_t slot, size_t kv_head) const {
  return kv_head * kBlockSlots * key_planes_ + KeyTileIndex<T>(slot % kBlockSlots, key_planes_);
}

template <typename T>
size_t KvCacheOf<T>::BlockValueIndex(size_t slot, size_t kv_head) const {
  return kv_head * kBlockSlots * dv_ + ValueTileIndex<T>(slot % kBlockSlots, dv_);
}

template <typename T>
void KvCacheOf<T>::Rows(int64_t first, size_t count, size_t kv_head, const T** keys, const T** values) const {
  for (size_t n = 0; n < count;) {
    const int64_t position = first + static_cast<int64_t>(n);
    if (position >= committed_) {
      const auto index = static_cast<size_t>(position - committed_);
      keys[n] = &scratch_keys_[ScratchKeyIndex(index, kv_head)];
      values[n] = &scratch_values_[ScratchValueIndex(index, kv_head)];
      ++n;
      continue;
    }
    // The rest of the slot's tile at once, up to the ring's wrap and the
    // scratch: a decode step at depth asks for every visible position of
    // every K/V head, and each slot's own indices cost about a fifth as much
    // as the kernel's reading it.
    const size_t slot = Slot(position), lane = slot % kKeyTile;
    size_t run = std::min({count - n, kKeyTile - lane, static_cast<size_t>(committed_ - position)});
    if (ring_ > 0) run = std::min(run, static_cast<size_t>(meta_ + ring_) - slot);
    const T* key = &key_blocks_[slot / kBlockSlots][BlockKeyIndex(slot, kv_head)];
    const T* value = &value_blocks_[slot / kBlockSlots][BlockValueIndex(slot, kv_head)] - value_lane_offsets_[lane];
    for (size_t r = 0; r < run; ++r) {
      keys[n + r] = key + r * kKeyLaneStride<T>;
      values[n + r] = value + value_lane_offsets_[lane + r];
    }
    n += run;
  }
}

template <typename T>
void KvCacheOf<T>::Commit() {
  for (int64_t position = committed_; position < positions_; ++position) {
    const bool evicted = ring_ > 0 && position >= meta_ && position < positions_ - ring_;
    if (evicted) continue;
    const size_t slot = Slot(position);
    while (slot / kBlockSlots >= key_blocks_.size()) {
      key_blocks_.emplace_back(kBlockSlots * kv_heads_ * key_planes_ + kKeyPadding<T>);
      value_blocks_.emplace_back(kBlockSlots * kv_heads_ * dv_);
    }
    slots_used_ = std::max(slots_used_, slot + 1);
    for (size_t head = 0; head < kv_heads_; ++head) {  // still in the scratch: position >= committed_
      const T *key, *value;
      Rows(position, 1, head, &key, &value);
      T* stored = &key_blocks_[slot / kBlockSlots][BlockKeyIndex(slot, head)];
      for (size_t i = 0; i < key_planes_; ++i) stored[KeyPlaneOffset<T>(i)] = key[KeyPlaneOffset<T>(i)];
      T* stored_value = &value_blocks_[slot / kBlockSlots][BlockValueIndex(slot, head)];
      const size_t width = ValueSliceWidth(dv_);
      for (size_t slice = 0; slice < dv_; slice += width) {
        const size_t at = ValueElementOffset<T>(slice, dv_);
        for (size_t e = 0; e < width * kValueLaneStride<T>; e += kValueLaneStride<T>) stored_value[at + e] = value[at + e];
      }
    }
  }
  // Release the scratch (`= {}` would keep its capacity): the next chunk may be one token.
  CacheLineVector<T>().swap(scratch_keys_);
  std::vector<T>().swap(scratch_values_);
  committed_ = positions_;
}

template <typename T>
size_t KvCacheOf<T>::bytes() const {
  return slots_used_ * kv_heads_ * (key_planes_ + dv_) * sizeof(T);
}

template <typename T>
size_t KvCacheOf<T>::held_bytes() const {
  return key_blocks_.size() * kBlockSlots * kv_heads_ * (key_planes_ + dv_) * sizeof(T);  // not the tile padding
}

template class KvCacheOf<float>;
template class KvCacheOf<hwy::float16_t>;
template class KvCacheOf<int8_t>;

SequenceState::SequenceState(const Config& config, CacheType cache_type)
    : layers(static_cast<size_t>(config.num_hidden_layers)) {
  const auto d_inner = static_cast<size_t>(config.d_inner);
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    Layer& state = layers[static_cast<size_t>(layer)];
    if (config.IsOwner(layer)) {
      switch (cache_type) {
        case CacheType::kF32: state.kv.emplace_back(std::in_place_type<KvCacheOf<float>>, config, layer); break;
        case CacheType::kF16: state.kv.emplace_back(std::in_place_type<KvCacheOf<hwy::float16_t>>, config, layer); break;
        case CacheType::kQ8: state.kv.emplace_back(std::in_place_type<KvCacheOf<int8_t>>, config, layer); break;
      }
    }
    state.conv.assign(static_cast<size_t>(config.mamba_d_conv - 1) * d_inner, 0.0f);
    state.ssm.assign(d_inner * static_cast<size_t>(config.mamba_d_state), 0.0f);
  }
}

size_t SequenceState::bytes(bool held) const {
  size_t total = 0;
  for (const Layer& layer : layers) {
    for (const KvCache& cache : layer.kv) {
      total += std::visit([&](const auto& kv) { return held ? kv.held_bytes() : kv.bytes(); }, cache);
    }
    total += (layer.conv.size() + layer.ssm.size()) * sizeof(float);
  }
  return total;
}

std::vector<float> RopeInverseFrequencies(const Config& config) {
  if (!config.rope) return {};
  const auto dim = static_cast<double>(config.head_dim_qk);
  double base = config.rope_theta;
  if (config.rope_type == RopeType::kNtk) {
    constexpr double kFactor = 2.0;  // hard-coded in the official rotary embedding
    const double ratio = static_cast<double>(config.max_position_embeddings) /
                         static_cast<double>(config.orig_max_position_embeddings);
    base *= std::pow(kFactor * ratio - (kFactor - 1.0), dim / (dim - 2.0));
  }
  // torch: 1 / (base_f32 ** (arange(0, dim, 2).float() / dim)), all in f32.
  std::vector<float> inv_freq(static_cast<size_t>(config.head_dim_qk / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(base), exponent);
  }
  return inv_freq;
}

namespace {

// Working buffers of one forward pass, reused by every layer: fresh vectors
// per layer zero-filled and page-faulted hundreds of MB for long prompts (a
// fifth of prefill time at 4k tokens). They grow, never shrink, and nothing
// reads an element before writing it.
struct Scratch {
  std::vector<float> u, proj, xc, params, dt, delta_pre, ssm_out, attn_out, queries, attention_parts, fused, mixed,
      up, gate;
  std::vector<SoftmaxStats> attention_stats;
};

// The first n elements of v, growing it if needed.
template <typename T>
T* Take(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// fn(r) for every row r < rows; a prompt's rows are split over the pool (row
// by row on one thread, the norms and residuals between the products left
// the second core idle).
template <typename Fn>
void ForEachRow(ThreadPool& pool, size_t rows, size_t row_values, const Fn& fn) {
  ParallelForValues(pool, rows, rows * row_values, [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) fn(r);
  });
}

// Causal depthwise conv (kernel d_conv, zero history before position 0) and
// SiLU over one segment. xs rows have stride `stride`; the conv state carries
// the newest d_conv-1 inputs into the next chunk. Output xc: [n, d_inner].
void CausalConv(const Config& c, const LayerWeights& w, ThreadPool& pool, std::vector<float>& conv_state,
                const float* xs, size_t stride, size_t n, float* xc) {
  const auto d_inner = static_cast<size_t>(c.d_inner);
  const auto taps = static_cast<size_t>(c.mamba_d_conv);
  const size_t history = taps - 1;
  // The inputs of position s in [-history, n): the state for s < 0, the chunk after.
  auto input = [&](ptrdiff_t s) {
    return s < 0 ? &conv_state[static_cast<size_t>(static_cast<ptrdiff_t>(history) + s) * d_inner]
                 : xs + static_cast<size_t>(s) * stride;
  };
  // Tap after tap over a row of channels, each channel summing in the order
  // bias, tap 0, tap 1, ...: vectorised by the compiler.
  const auto convolve = [&](size_t first_channel, size_t end_channel) {
    for (size_t t = 0; t < n; ++t) {
      float* out = xc + t * d_inner;
      for (size_t ch = first_channel; ch < end_channel; ++ch) out[ch] = w.conv_bias.empty() ? 0.0f : w.conv_bias[ch];
      for (size_t k = 0; k < taps; ++k) {
        const float* in = input(static_cast<ptrdiff_t>(t + k) - static_cast<ptrdiff_t>(history));
        const float* tap = &w.conv_weight[k * d_inner];
        for (size_t ch = first_channel; ch < end_channel; ++ch) out[ch] += tap[ch] * in[ch];
      }
    }
  };
  constexpr size_t kChannelBlock = 64;  // whole cache lines of xc per thread
  ParallelForValues(pool, (d_inner + kChannelBlock - 1) / kChannelBlock, n * d_inner, [&](size_t begin, size_t end) {
    convolve(begin * kChannelBlock, std::min(d_inner, end * kChannelBlock));
  });
  SiluInPlace(xc, n * d_inner, pool);
  // The newest `history` inputs, in place: the state's own newest rows move
  // to the front (a forward copy, safe as they move down), the chunk's follow.
  const size_t kept = n < history ? history - n : 0;
  std::copy(conv_state.begin() + static_cast<ptrdiff_t>((history - kept) * d_inner), conv_state.end(),
            conv_state.begin());
  for (size_t h = kept; h < history; ++h) {
    std::copy_n(xs + (n + h - history) * stride, d_inner, &conv_state[h * d_inner]);
  }
}

// Input-dependent SSM parameters of every row (spec 3.4.2 steps 2-4): x_proj,
// the dt/B/C norms, and dt_proj without its bias. xc: [rows, d_inner];
// params: [rows, dt_rank | B | C]; delta_pre: [rows, d_inner].
void SsmParameters(const Config& c, const LayerWeights& w, ThreadPool& pool, const float* xc, size_t rows,
                   Scratch& scratch) {
  const auto d_state = static_cast<size_t>(c.mamba_d_state);
  const auto dt_rank = static_cast<size_t>(c.mamba_dt_rank);
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const size_t width = dt_rank + 2 * d_state;
  float* params = Take(scratch.params, rows * width);
  MatMul(w.x_proj, xc, rows, params, pool);
  float* dt = Take(scratch.dt, rows * dt_rank);  // [rows, dt_rank]
  for (size_t r = 0; r < rows; ++r) {
    float* row = &params[r * width];
    if (c.mamba_inner_layernorms) {
      RmsNorm(row, w.dt_norm, dt_rank, eps, row);
      RmsNorm(row + dt_rank, w.b_norm, d_state, eps, row + dt_rank);
      RmsNorm(row + dt_rank + d_state, w.c_norm, d_state, eps, row + dt_rank + d_state);
    }
    std::copy_n(row, dt_rank, &dt[r * dt_rank]);
  }
  MatMul(w.dt_proj, dt, rows, Take(scratch.delta_pre, rows * static_cast<size_t>(c.d_inner)), pool);
}

// Attention branch over one segment (spec 3.4.3). Owners rotate and append
// their K/V first, so the chunk attends to itself causally; consumers read
// their producer's cache, which the producer, an earlier layer, has already
// extended by this chunk. q, k, v rows have stride `stride`. Output:
// [n, heads * head_dim_v].
void Attention(const Config& c, const LayerWeights& w, std::span<const float> inv_freq, ThreadPool& pool, int layer,
               SequenceState& state, const float* q, const float* k, const float* v, size_t stride, size_t n,
               Scratch& scratch, float* out) {
  const auto dqk = static_cast<size_t>(c.head_dim_qk);
  const auto dv = static_cast<size_t>(c.head_dim_v);
  const auto heads = static_cast<size_t>(c.num_attention_heads);
  const auto kv_heads = static_cast<size_t>(c.num_key_value_heads);
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const LayerRole& role = c.layers[layer];
  const int64_t start = state.positions;

  std::vector<float> head(kv_heads * dqk), key_cos(inv_freq.size()), key_sin(inv_freq.size());
  if (c.IsOwner(layer)) {
    KvCache& cache = state.layers[layer].kv.front();
    for (size_t t = 0; t < n; ++t) {
      if (c.rope) RotaryAngles(inv_freq, start + static_cast<int64_t>(t), key_cos.data(), key_sin.data());
      for (size_t g = 0; g < kv_heads; ++g) {
        float* key = &head[g * dqk];
        std::copy_n(k + t * stride + g * dqk, dqk, key);
        if (!w.k_norm.empty()) RmsNorm(key, w.k_norm, dqk, eps, key);
        if (c.rope) ApplyRope(key, key_cos.data(), key_sin.data(), inv_freq.size());
      }
      std::visit([&](auto& kv) { kv.Append(head.data(), v + t * stride); }, cache);
    }
  }

  float* queries = Take(scratch.queries, n * heads * dqk);  // [n, heads, dqk], normalised and rotated
  pool.ParallelFor(n, [&](size_t t_begin, size_t t_end) {
    thread_local std::vector<float> cos_buffer, sin_buffer;
    float* cos = Take(cos_buffer, inv_freq.size());
    float* sin = Take(sin_buffer, inv_freq.size());
    for (size_t t = t_begin; t < t_end; ++t) {
      if (c.rope) RotaryAngles(inv_freq, start + static_cast<int64_t>(t), cos, sin);
      for (size_t h = 0; h < heads; ++h) {
        float* query = &queries[(t * heads + h) * dqk];
        std::copy_n(q + t * stride + h * dqk, dqk, query);
        if (!w.q_norm.empty()) RmsNorm(query, w.q_norm, dqk, eps, query);
        if (c.rope) ApplyRope(query, cos, sin, inv_freq.size());
      }
    }
  });

  // Visible keys of the token at position i (E3): the meta tokens and the
  // newest sliding_window + 1 positions in a sliding-window layer, everything
  // up to i in a global one. Key index m counts the meta part first.
  struct Visible {
    int64_t meta_end, window_begin, count;
    int64_t Position(int64_t m) const { return m < meta_end ? m : window_begin + (m - meta_end); }
  };
  auto visible = [&](size_t t) {
    const int64_t i = start + static_cast<int64_t>(t);
    const int64_t window_begin = role.global_attention ? 0 : std::max<int64_t>(0, i - c.sliding_window);
    const int64_t meta_end = std::min(window_begin, c.num_memory_tokens);
    return Visible{meta_end, window_begin, meta_end + (i - window_begin + 1)};
  };

  // Each token's visible keys go in ranges of kKeyRange, each range through
  // the kernel on its own, and the ranges of a head merge in order: the same
  // operations whatever the chunk size or thread count, so prefill, chunked
  // and token-by-token decoding give the same bits. Work items are the query
  // heads of one K/V head for one token, over a run of its ranges: all of
  // them when the chunk has several tokens (work enough for every thread),
  // one each in a decode step, so that every thread streams a share of each
  // head's keys once; their results wait in `waiting` for the merge. 256
  // keys: fewer calls and merges than 128 (decode at depth 4096 went from
  // 87 to 90 % of depth 128), and still 5 ranges of a 1,153-key window per
  // K/V head for the threads to share.
  constexpr int64_t kKeyRange = 256;
  struct Item {
    size_t t, g;
    int64_t first_range, last_range;
    size_t waiting;  // where a partial item's ranges wait; kWhole for an item with every range
  };
  constexpr size_t kWhole = SIZE_MAX;
  const size_t group = heads / kv_heads;
  const size_t part_floats = group * dv;  // one range's result: [head in group, dv]
  std::vector<Item> items;
  size_t waiting_ranges = 0;
  for (size_t g = 0; g < kv_heads; ++g) {
    for (size_t t = 0; t < n; ++t) {
      const int64_t ranges = (visible(t).count + kKeyRange - 1) / kKeyRange;
      if (n > 1 || ranges == 1) {
        items.push_back({t, g, 0, ranges, kWhole});
        continue;
      }
      for (int64_t r = 0; r < ranges; ++r) items.push_back({t, g, r, r + 1, waiting_ranges + static_cast<size_t>(r)});
      waiting_ranges += static_cast<size_t>(ranges);
    }
  }
  float* waiting_parts = Take(scratch.attention_parts, waiting_ranges * part_floats);
  SoftmaxStats* waiting_stats = Take(scratch.attention_stats, waiting_ranges * group);

  const float scale = 1.0f / std::sqrt(static_cast<float>(dqk));
  auto merge = [&](const float* parts, const SoftmaxStats* stats, int64_t ranges, size_t t, size_t g) {
    for (size_t j = 0; j < group; ++j) {
      MergeAttention(parts + j * dv, part_floats, stats + j, group, static_cast<size_t>(ranges), dv,
                     out + t * heads * dv + (g * group + j) * dv);
    }
  };
  auto attend_items = [&](const auto& source) {
    using Element = typename std::remove_cvref_t<decltype(source)>::Element;
    pool.ParallelFor(
        items.size(),
        [&](size_t item_begin, size_t item_end) {
          // Per-thread buffers kept across calls: the scores of a long context
          // would otherwise be zero-filled for every layer and token.
          thread_local std::vector<float> score_buffer, part_buffer;
          thread_local std::vector<SoftmaxStats> stats_buffer;
          // The key and value rows of a range, this call's and the next's:
          // the kernel fetches the next range's keys while it sums this
          // one's values (NextKeys).
          struct RangeRows {
            std::vector<const Element*> keys, values;
          };
          thread_local RangeRows rows[2];
          auto fill = [&](const Item& item, int64_t r, RangeRows& into) {
            const Visible keys = visible(item.t);
            const int64_t begin = r * kKeyRange, end = std::min(keys.count, (r + 1) * kKeyRange);
            into.keys.resize(static_cast<size_t>(end - begin));
            into.values.resize(static_cast<size_t>(end - begin));
            // The range's positions: meta tokens, then the window, each consecutive.
            for (int64_t m = begin; m < end;) {
              const int64_t run_end = m < keys.meta_end ? std::min(end, keys.meta_end) : end;
              const auto at = static_cast<size_t>(m - begin);
              source.Rows(keys.Position(m), static_cast<size_t>(run_end - m), item.g, &into.keys[at], &into.values[at]);
              m = run_end;
            }
          };
          float* scores = Take(score_buffer, group * static_cast<size_t>(kKeyRange));
          float* parts = nullptr;
          SoftmaxStats* stats = nullptr;
          size_t index = item_begin, current = 0;
          int64_t r = items[index].first_range;
          fill(items[index], r, rows[current]);
          while (index < item_end) {  // every range of the claimed items, in order
            const Item& item = items[index];
            if (r == item.first_range) {
              const auto ranges = static_cast<size_t>(item.last_range - item.first_range);
              parts = item.waiting == kWhole ? Take(part_buffer, ranges * part_floats)
                                             : &waiting_parts[item.waiting * part_floats];
              stats = item.waiting == kWhole ? Take(stats_buffer, ranges * group) : &waiting_stats[item.waiting * group];
            }
            size_t next_index = index;
            int64_t next_r = r + 1;
            if (next_r == item.last_range && ++next_index < item_end) next_r = items[next_index].first_range;
            const RangeRows& now = rows[current];
            RangeRows& next = rows[1 - current];
            if (next_index < item_end) fill(items[next_index], next_r, next);
            const NextKeys<Element> next_keys = next_index < item_end ? NextKeys<Element>{next.keys.data(), next.keys.size()}
                                                                      : NextKeys<Element>{};
            const auto part = static_cast<size_t>(r - item.first_range);
            Attend(&queries[(item.t * heads + item.g * group) * dqk], group, now.keys.data(), now.values.data(),
                   now.keys.size(), dqk, dv, scale, scores, &parts[part * part_floats], &stats[part * group], next_keys);
            if (r + 1 == item.last_range && item.waiting == kWhole) merge(parts, stats, item.last_range, item.t, item.g);
            index = next_index, r = next_r, current = 1 - current;
          }
        },
        1);
  };
  std::visit(attend_items, state.layers[role.kv_source].kv.front());
  for (size_t i = 0; i < items.size();) {  // the decode step's ranges, a (token, K/V head) at a time
    if (items[i].waiting == kWhole) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < items.size() && items[end].t == items[i].t && items[end].g == items[i].g) ++end;
    merge(&waiting_parts[items[i].waiting * part_floats], &waiting_stats[items[i].waiting * group],
          static_cast<int64_t>(end - i), items[i].t, items[i].g);
    i = end;
  }
}

// SwiGLU (down(silu(gate u) * up u)) or relu2 (down(relu(up u)^2)). u, out: [rows, hidden].
void Mlp(const Config& c, const LayerWeights& w, ThreadPool& pool, const float* u, size_t rows, Scratch& scratch,
         float* out) {
  const size_t size = rows * static_cast<size_t>(c.intermediate_size);
  float* up = Take(scratch.up, size);  // [rows, intermediate]
  MatMul(w.up_proj, u, rows, up, pool);
  if (c.mlp_activation == MlpActivation::kSilu) {
    float* gate = Take(scratch.gate, size);
    MatMul(w.gate_proj, u, rows, gate, pool);
    MultiplyBySilu(gate, up, size, pool);
  } else {
    for (size_t i = 0; i < size; ++i) up[i] = up[i] > 0.0f ? up[i] * up[i] : 0.0f;
  }
  MatMul(w.down_proj, up, rows, out, pool);
}

// One decoder layer (spec 3.3-3.4): x [rows, hidden] in place.
void Layer(const ForwardContext& context, int layer, std::span<const Segment> segments, Scratch& scratch,
           std::vector<float>& x) {
  const Config& c = context.config;
  const LayerWeights& w = context.weights.layers[layer];
  const auto hidden = static_cast<size_t>(c.hidden_size);
  const auto d_inner = static_cast<size_t>(c.d_inner);
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const size_t rows = x.size() / hidden;

  float* u = Take(scratch.u, rows * hidden);  // [rows, hidden]
  ForEachRow(context.pool, rows, hidden, [&](size_t r) { RmsNorm(&x[r * hidden], w.input_norm, hidden, eps, &u[r * hidden]); });

  // in_proj rows: q | k | v | x | z for owners, q | x | z for consumers (spec 3.4.1).
  const auto width = static_cast<size_t>(c.InProjRows(layer));
  float* proj = Take(scratch.proj, rows * width);  // [rows, in_proj rows]
  MatMul(w.in_proj, u, rows, proj, context.pool);
  if (!w.in_proj_bias.empty()) {
    for (size_t r = 0; r < rows; ++r) {
      for (size_t i = 0; i < width; ++i) proj[r * width + i] += w.in_proj_bias[i];
    }
  }
  const size_t k_offset = static_cast<size_t>(c.q_width);
  const size_t v_offset = k_offset + static_cast<size_t>(c.k_width);
  const size_t x_offset = c.IsOwner(layer) ? v_offset + static_cast<size_t>(c.v_width) : k_offset;
  const size_t z_offset = x_offset + d_inner;

  // SSM branch: conv per sequence, parameters for all rows, scan per sequence.
  float* xc = Take(scratch.xc, rows * d_inner);  // [rows, d_inner] after conv and SiLU
  for (const Segment& s : segments) {
    CausalConv(c, w, context.pool, s.state->layers[layer].conv, &proj[s.first_row * width + x_offset], width, s.rows,
               &xc[s.first_row * d_inner]);
  }
  SsmParameters(c, w, context.pool, xc, rows, scratch);
  const float* params = scratch.params.data();
  const float* delta_pre = scratch.delta_pre.data();
  const size_t params_width = static_cast<size_t>(c.mamba_dt_rank + 2 * c.mamba_d_state);
  float* ssm_out = Take(scratch.ssm_out, rows * d_inner);    // [rows, d_inner]
  float* attn_out = Take(scratch.attn_out, rows * d_inner);  // [rows, heads * head_dim_v]
  for (const Segment& s : segments) {
    const size_t r = s.first_row;
    const size_t d_state = static_cast<size_t>(c.mamba_d_state);
    const float* bc = &params[r * params_width + static_cast<size_t>(c.mamba_dt_rank)];
    SelectiveScan({.d_inner = d_inner, .d_state = d_state, .steps = s.rows, .x = &xc[r * d_inner],
                   .delta_pre = &delta_pre[r * d_inner], .dt_bias = w.dt_bias.data(), .a = w.a.data(),
                   .d_skip = w.d_skip.data(), .b = bc, .c = bc + d_state, .bc_stride = params_width,
                   .z = &proj[r * width + z_offset], .z_stride = width, .state = s.state->layers[layer].ssm.data(),
                   .out = &ssm_out[r * d_inner]},
                  context.pool);
    Attention(c, w, context.inv_freq, context.pool, layer, *s.state, &proj[r * width], &proj[r * width + k_offset],
              &proj[r * width + v_offset], width, s.rows, scratch, &attn_out[r * d_inner]);
  }

  // Fusion: both branches normalised over all d_inner features, then averaged.
  float* fused = Take(scratch.fused, rows * d_inner);  // [rows, d_inner]
  ForEachRow(context.pool, rows, d_inner, [&](size_t r) {
    float* row = &fused[r * d_inner];
    float* ssm_row = &ssm_out[r * d_inner];
    RmsNorm(&attn_out[r * d_inner], w.attn_out_norm, d_inner, eps, row);
    RmsNorm(ssm_row, w.ssm_out_norm, d_inner, eps, ssm_row);
    for (size_t i = 0; i < d_inner; ++i) row[i] = (row[i] + ssm_row[i]) / 2.0f;
  });
  float* mixed = Take(scratch.mixed, rows * hidden);  // [rows, hidden]
  MatMul(w.out_proj, fused, rows, mixed, context.pool);
  ForEachRow(context.pool, rows, hidden, [&](size_t r) {
    for (size_t i = 0; i < hidden; ++i) {
      x[r * hidden + i] += mixed[r * hidden + i] + (w.out_proj_bias.empty() ? 0.0f : w.out_proj_bias[i]);
    }
  });

  if (c.intermediate_size > 0) {
    ForEachRow(context.pool, rows, hidden, [&](size_t r) { RmsNorm(&x[r * hidden], w.mlp_norm, hidden, eps, &u[r * hidden]); });
    Mlp(c, w, context.pool, u, rows, scratch, mixed);
    ForEachRow(context.pool, rows, hidden, [&](size_t r) {
      for (size_t i = 0; i < hidden; ++i) x[r * hidden + i] += mixed[r * hidden + i];
    });
  }
}

}  // namespace

void Forward(const ForwardContext& context, std::span<const Segment> segments, std::vector<float>& x) {
  const Config& c = context.config;
  Scratch scratch;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) Layer(context, layer, segments, scratch, x);
  for (const Segment& s : segments) {
    for (SequenceState::Layer& layer : s.state->layers) {
      for (KvCache& cache : layer.kv) std::visit([](auto& kv) { kv.Commit(); }, cache);
    }
    s.state->positions += static_cast<int64_t>(s.rows);
  }
  const auto hidden = static_cast<size_t>(c.hidden_size);
  ForEachRow(context.pool, x.size() / hidden, hidden, [&](size_t r) {
    RmsNorm(&x[r * hidden], context.weights.final_norm, hidden, static_cast<float>(c.rms_norm_eps), &x[r * hidden]);
  });
}

}  // namespace hymba
