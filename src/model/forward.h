// The Hymba forward pass (spec section 3 with the semantics of section E).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include <hwy/base.h>

#include "core/cache_line_vector.h"
#include "core/thread_pool.h"
#include "hymba/config.h"
#include "hymba/model.h"
#include "kernels/attention.h"
#include "model/weights.h"

namespace hymba {

// K (after RoPE) and V of one KV-owning layer for one sequence. The meta
// tokens' entries are kept for good; the rest is either the full history or,
// for a sliding-window layer that no global layer reads (E6), a ring of the
// newest sliding_window + 1 entries (E3). Entries appended during a chunk live
// in a scratch area until Commit(), so that every query of the chunk, in this
// layer and in the consumers that read it, still sees its whole window.
// Entries are stored as T: float, hwy::float16_t for cache type f16, or int8_t
// with a scale per row for cache type q8 (kernels/attention.h).
template <typename T>
class KvCacheOf {
 public:
  using Element = T;
  KvCacheOf(const Config& config, int owner);

  void Append(const float* key, const float* value);  // the next position, every K/V head
  // Where the key (in the attention kernel's tiles) and the value of `count`
  // consecutive positions from `first` are, for one K/V head.
  void Rows(int64_t first, size_t count, size_t kv_head, const T** keys, const T** values) const;
  void Commit();  // the chunk is done: move scratch entries into the ring

  int64_t positions() const { return positions_; }
  size_t bytes() const;       // persistent slots in use, not counting the scratch
  size_t held_bytes() const;  // the blocks allocated for them (less the key padding of each block)

 private:
  size_t Slot(int64_t position) const;
  // Where a slot's key and value start in key_blocks_[slot / kBlockSlots] and
  // value_blocks_[slot / kBlockSlots], and a chunk's entry (index = position
  // - committed_) in the scratch.
  size_t BlockKeyIndex(size_t slot, size_t kv_head) const;
  size_t BlockValueIndex(size_t slot, size_t kv_head) const;
  size_t ScratchKeyIndex(size_t index, size_t kv_head) const;
  size_t ScratchValueIndex(size_t index, size_t kv_head) const;
  size_t kv_heads_, dqk_, dv_;
  // Elements a key takes in its tile (KeyPlanes<T>: the head dimensions,
  // and for q8 a zero to pair an odd count and the two scales' bytes).
  size_t key_planes_;
  std::array<size_t, kKeyTile> value_lane_offsets_;  // ValueTileIndex<T> of each lane of a tile
  int64_t meta_;
  int64_t ring_;  // ring entries after the meta tokens; 0 = keep the full history
  int64_t positions_ = 0;
  int64_t committed_ = 0;  // positions before this are in the persistent slots
  // Persistent slots live in blocks of kBlockSlots that are never moved or
  // resized, allocated as positions reach them: a full history holds at most
  // one partly used block, and a ring (meta + ring slots) never holds more
  // than the sequence has used, whatever sliding_window a config names.
  // Inside a block each K/V head has its own run of slots, so a decode step
  // reads one head's keys (and values) as one stream, not a slice of every
  // row; keys and values are in the attention kernel's tiles
  // (kernels/attention.h).
  static constexpr size_t kBlockSlots = 256;
  static_assert(kBlockSlots % kKeyTile == 0, "a block holds whole key tiles");
  std::vector<CacheLineVector<T>> key_blocks_;    // [block][kv head][key tiles of the block's slots] + kKeyPadding
  std::vector<CacheLineVector<T>> value_blocks_;  // [block][kv head][value tiles of the block's slots]
  size_t slots_used_ = 0;
  CacheLineVector<T> scratch_keys_;  // [tile of positions_ - committed_][kv head][key tile] + kKeyPadding
  std::vector<T> scratch_values_;  // [tile of positions_ - committed_][kv head][value tile]
};
using KvCache = std::variant<KvCacheOf<float>, KvCacheOf<hwy::float16_t>, KvCacheOf<int8_t>>;

// Everything one sequence carries from one chunk of positions to the next.
struct SequenceState {
  struct Layer {
    std::vector<KvCache> kv;  // one entry for a KV-owning layer, none for a consumer
    std::vector<float> conv;  // [d_conv - 1, d_inner] newest pre-conv inputs, oldest first
    std::vector<float> ssm;   // d_state x d_inner, in the scan's blocks (kernels/scan.h)
  };
  int64_t positions = 0;  // positions processed so far, meta tokens included
  std::vector<Layer> layers;

  SequenceState(const Config& config, CacheType cache_type);
  size_t bytes(bool held = false) const;  // K/V slots in use (or held in whole blocks), conv and SSM
};

// Rows [first_row, first_row + rows) of a batch belong to one sequence and
// continue it at position state->positions.
struct Segment {
  SequenceState* state;
  size_t first_row;
  size_t rows;
};

// Everything the layers need that does not change per call.
struct ForwardContext {
  const Config& config;
  const Weights& weights;
  std::span<const float> inv_freq;  // [head_dim_qk / 2], empty without RoPE
  ThreadPool& pool;
};

// RoPE inverse frequencies in f32, computed as the official constructor does (E2).
std::vector<float> RopeInverseFrequencies(const Config& config);

// Runs the rows of x [rows, hidden] (embeddings or meta tokens) through every
// layer and the final norm, in place. Each segment continues its own sequence;
// every weight is read once for the whole batch.
void Forward(const ForwardContext& context, std::span<const Segment> segments, std::vector<float>& x);

}  // namespace hymba
