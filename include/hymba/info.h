// What a model costs: parameters by component and cache bytes per sequence,
// derived from the config alone (spec sections 2.3 and 7.1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hymba/config.h"
#include "hymba/model.h"

namespace hymba {

struct ParameterGroup {
  std::string name;
  int64_t count = 0;
};

// Bytes of one sequence's cache for one storage layout.
struct CacheLayout {
  std::string name;
  int kv_bytes_per_value = 2;
  int ssm_bytes_per_value = 2;
  int conv_bytes_per_value = 2;
  int64_t conv_columns = 0;    // pre-conv inputs kept per channel
  int64_t window_entries = 0;  // keys a sliding-window producer keeps besides the meta tokens

  int64_t kv_bytes_per_token_per_owner = 0;
  int64_t growing_bytes_per_token = 0;   // owners that keep full history
  int64_t filling_bytes_per_token = 0;   // every owner, while windows still fill
  int64_t meta_kv_bytes = 0;
  int64_t window_cap_bytes = 0;          // sliding-window producers when full
  int64_t ssm_state_bytes = 0;
  int64_t conv_state_bytes = 0;

  // Whole cache after `text_tokens` tokens, with or without the meta tokens' K/V.
  int64_t BytesAt(const Config& config, int64_t text_tokens, bool count_meta) const;
  // K/V that the decode step of the token after `text_tokens` tokens reads:
  // every layer, consumers included, reads the positions it sees (the meta
  // tokens and its window, or everything in a global layer) from its owner's
  // cache. Beside the weights, what a step at depth streams from memory.
  int64_t DecodeReadBytes(const Config& config, int64_t text_tokens) const;
};

struct ModelReport {
  std::vector<ParameterGroup> parameters;  // by component
  int64_t total_parameters = 0;
  CacheLayout official;  // HF layout in bf16 (spec 7.1)
  CacheLayout engine;    // this engine: K/V of the cache type, f32 SSM state, window + 1 keys (E1, E3)
  int64_t llama32_3b_bytes_per_token = 0;  // 28 layers x 8 KV heads x 128 x 2 (K,V) x bf16
};

// separate_lm_head: the checkpoint has its own lm_head.weight (untied head).
ModelReport DescribeModel(const Config& config, bool separate_lm_head, CacheType cache = CacheType::kF32);

}  // namespace hymba
