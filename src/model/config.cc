// Parsing and validation of config.json (spec 1.1, E10). Absent fields take the
// defaults of the official HymbaConfig; values the engine cannot honour are
// refused with the field name and value.
#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "hymba/config.h"
#include "hymba/error.h"
#include "io/json.h"
#include "io/text_file.h"

namespace hymba {
namespace {

using nlohmann::json;

class ConfigReader {
 public:
  ConfigReader(const json& root, std::string source) : root_(root), source_(std::move(source)) {}

  [[noreturn]] void Fail(const std::string& field, const std::string& problem) const {
    throw Error(source_ + ": field \"" + field + "\" " + problem);
  }

  bool Has(const std::string& field) const { return root_.contains(field) && !root_[field].is_null(); }
  const json& Raw(const std::string& field) const { return root_[field]; }

  int64_t Int(const std::string& field, std::optional<int64_t> fallback) const {
    if (!Has(field)) {
      if (!fallback) Fail(field, "is missing");
      return *fallback;
    }
    return AsInt(field, root_[field]);
  }

  int64_t AsInt(const std::string& field, const json& value) const {
    // Accept 4.0 written for 4, as Python's json.dump of a float would.
    if (value.is_number_integer()) return value.get<int64_t>();
    if (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>() &&
        std::fabs(value.get<double>()) < 1e15) {
      return static_cast<int64_t>(value.get<double>());
    }
    Fail(field, "must be an integer, got " + JsonExcerpt(value));
  }

  double Number(const std::string& field, double fallback) const {
    if (!Has(field)) return fallback;
    if (!root_[field].is_number()) Fail(field, "must be a number, got " + JsonExcerpt(root_[field]));
    return root_[field].get<double>();
  }

  bool Bool(const std::string& field, bool fallback) const {
    if (!Has(field)) return fallback;
    if (!root_[field].is_boolean()) Fail(field, "must be true or false, got " + JsonExcerpt(root_[field]));
    return root_[field].get<bool>();
  }

  std::optional<std::string> String(const std::string& field) const {
    if (!Has(field)) return std::nullopt;
    if (!root_[field].is_string()) Fail(field, "must be a string, got " + JsonExcerpt(root_[field]));
    return root_[field].get<std::string>();
  }

  std::vector<int> LayerList(const std::string& field, const json& value, int num_layers) const {
    if (!value.is_array()) Fail(field, "must be a list of layer indices, got " + JsonExcerpt(value));
    std::vector<int> layers;
    for (const json& entry : value) {
      const int64_t layer = AsInt(field, entry);
      if (layer < 0 || layer >= num_layers) {
        Fail(field, "names layer " + std::to_string(layer) + ", outside 0.." + std::to_string(num_layers - 1));
      }
      layers.push_back(static_cast<int>(layer));
    }
    return layers;
  }

 private:
  const json& root_;
  std::string source_;
};

void RequirePositive(const ConfigReader& reader, const std::string& field, int64_t value) {
  if (value <= 0) reader.Fail(field, "must be positive, got " + std::to_string(value));
}

// Bounds far above any real model that keep every size the engine derives
// (products of two dimensions, a vocabulary times a width) inside int64, so a
// hostile config is refused before anything is computed or allocated from it.
constexpr int64_t kMaxDimension = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxPositions = INT32_MAX;

void RequireAtMost(const ConfigReader& reader, const std::string& field, int64_t value, int64_t limit) {
  if (value > limit) reader.Fail(field, "is too large: " + std::to_string(value) + " (at most " + std::to_string(limit) + ")");
}

void AssignKvRoles(const ConfigReader& reader, Config& config) {
  const int n = config.num_hidden_layers;
  config.layers.assign(static_cast<size_t>(n), LayerRole{});
  for (int layer = 0; layer < n; ++layer) {
    config.layers[layer].kv_source = layer;
    config.layers[layer].global_attention =
        !config.HasSlidingWindow() ||
        std::find(config.global_attn_idx.begin(), config.global_attn_idx.end(), layer) != config.global_attn_idx.end();
  }
  if (!config.kv_reuse_group.empty()) {  // the official code prefers groups over kv_reuse_every_i_layer
    std::set<int> seen;
    for (const std::vector<int>& group : config.kv_reuse_group) {
      for (int layer : group) {
        if (!seen.insert(layer).second) {
          reader.Fail("kv_reuse_group", "lists layer " + std::to_string(layer) + " more than once");
        }
      }
      for (size_t i = 1; i < group.size(); ++i) {
        if (group[i] <= group[0]) {
          reader.Fail("kv_reuse_group", "consumer layer " + std::to_string(group[i]) +
                                            " does not come after its producer layer " + std::to_string(group[0]));
        }
        config.layers[group[i]].kv_source = group[0];
      }
    }
  } else if (config.kv_reuse_every_i_layer > 0) {
    for (int layer = 0; layer < n; ++layer) {
      config.layers[layer].kv_source = layer / config.kv_reuse_every_i_layer * config.kv_reuse_every_i_layer;
    }
  }
}

}  // namespace

bool Config::KeepsFullHistory(int owner) const {
  for (const LayerRole& role : layers) {
    if (role.kv_source == owner && role.global_attention) return true;
  }
  return false;
}

Config ParseConfig(const std::string& json_text, const std::string& source_name) {
  const json root = ParseJson(json_text, source_name);
  if (!root.is_object()) throw Error(source_name + ": expected a JSON object");
  const ConfigReader reader(root, source_name);
  Config config;

  if (auto model_type = reader.String("model_type"); model_type && *model_type != "hymba") {
    reader.Fail("model_type", "is \"" + *model_type + "\", expected \"hymba\"");
  }

  config.vocab_size = reader.Int("vocab_size", std::nullopt);
  config.hidden_size = reader.Int("hidden_size", std::nullopt);
  config.intermediate_size = reader.Int("intermediate_size", std::nullopt);
  const int64_t num_layers = reader.Int("num_hidden_layers", std::nullopt);
  const int64_t num_heads = reader.Int("num_attention_heads", std::nullopt);
  const int64_t num_kv_heads = reader.Int("num_key_value_heads", num_heads);
  RequirePositive(reader, "vocab_size", config.vocab_size);
  RequirePositive(reader, "hidden_size", config.hidden_size);
  RequirePositive(reader, "num_hidden_layers", num_layers);
  RequirePositive(reader, "num_attention_heads", num_heads);
  RequirePositive(reader, "num_key_value_heads", num_kv_heads);
  RequireAtMost(reader, "vocab_size", config.vocab_size, INT32_MAX);
  RequireAtMost(reader, "hidden_size", config.hidden_size, kMaxDimension);
  RequireAtMost(reader, "intermediate_size", config.intermediate_size, kMaxDimension);
  RequireAtMost(reader, "num_hidden_layers", num_layers, kMaxLayers);
  RequireAtMost(reader, "num_attention_heads", num_heads, kMaxDimension);
  if (config.intermediate_size < 0) {
    reader.Fail("intermediate_size", "must be >= 0, got " + std::to_string(config.intermediate_size));
  }
  config.num_hidden_layers = static_cast<int>(num_layers);
  config.num_attention_heads = static_cast<int>(num_heads);
  config.num_key_value_heads = static_cast<int>(num_kv_heads);
  if (num_heads % num_kv_heads != 0) {
    reader.Fail("num_key_value_heads", "(" + std::to_string(num_kv_heads) + ") must divide num_attention_heads (" +
                                           std::to_string(num_heads) + ")");
  }
  if (config.hidden_size % num_heads != 0) {
    reader.Fail("hidden_size", "(" + std::to_string(config.hidden_size) + ") must be a multiple of num_attention_heads (" +
                                   std::to_string(num_heads) + ")");
  }

  config.mamba_expand = reader.Number("mamba_expand", 2);
  const double d_inner = std::floor(config.mamba_expand * static_cast<double>(config.hidden_size));
  if (!(config.mamba_expand > 0) || d_inner < 1 || d_inner > static_cast<double>(kMaxDimension)) {
    reader.Fail("mamba_expand", "must give a positive SSM width, got " + JsonExcerpt(reader.Raw("mamba_expand")));
  }
  config.d_inner = static_cast<int64_t>(d_inner);
  if (config.d_inner % num_heads != 0) {
    reader.Fail("mamba_expand", "makes the SSM width " + std::to_string(config.d_inner) +
                                    ", not a multiple of num_attention_heads (" + std::to_string(num_heads) + ")");
  }
  config.head_dim_qk = config.hidden_size / num_heads;
  config.head_dim_v = config.d_inner / num_heads;
  config.q_width = config.hidden_size;
  config.k_width = num_kv_heads * config.head_dim_qk;
  config.v_width = num_kv_heads * config.head_dim_v;

  if (const int64_t attn_hidden = reader.Int("attn_hidden_size", -1); attn_hidden > 0 && attn_hidden != config.hidden_size) {
    reader.Fail("attn_hidden_size", "= " + std::to_string(attn_hidden) + " is not supported (only -1 or hidden_size)");
  }
  if (const int64_t kq_dim = reader.Int("kq_head_dim", -1); kq_dim > 0 && kq_dim != config.head_dim_qk) {
    reader.Fail("kq_head_dim", "= " + std::to_string(kq_dim) + " is not supported (only -1 or hidden_size / num_attention_heads)");
  }

  config.mamba_d_state = reader.Int("mamba_d_state", 16);
  config.mamba_d_conv = reader.Int("mamba_d_conv", 4);
  RequirePositive(reader, "mamba_d_state", config.mamba_d_state);
  RequirePositive(reader, "mamba_d_conv", config.mamba_d_conv);
  RequireAtMost(reader, "mamba_d_state", config.mamba_d_state, kMaxDimension);
  RequireAtMost(reader, "mamba_d_conv", config.mamba_d_conv, kMaxDimension);
  if (reader.Has("mamba_dt_rank") && reader.Raw("mamba_dt_rank").is_string()) {
    if (reader.Raw("mamba_dt_rank").get<std::string>() != "auto") {
      reader.Fail("mamba_dt_rank", "must be an integer or \"auto\", got " + JsonExcerpt(reader.Raw("mamba_dt_rank")));
    }
    config.mamba_dt_rank = (config.hidden_size + 15) / 16;
  } else {
    config.mamba_dt_rank = reader.Int("mamba_dt_rank", (config.hidden_size + 15) / 16);
  }
  RequirePositive(reader, "mamba_dt_rank", config.mamba_dt_rank);
  RequireAtMost(reader, "mamba_dt_rank", config.mamba_dt_rank, kMaxDimension);
  config.mamba_conv_bias = reader.Bool("mamba_conv_bias", true);
  config.mamba_proj_bias = reader.Bool("mamba_proj_bias", false);
  config.mamba_inner_layernorms = reader.Bool("mamba_inner_layernorms", true);

  if (auto act = reader.String("hidden_act"); act && *act != "silu" && *act != "swish") {
    reader.Fail("hidden_act", "= \"" + *act + "\" is not supported (the SSM convolution takes silu)");
  }
  if (auto act = reader.String("mlp_hidden_act").value_or("silu"); act == "relu2") {
    config.mlp_activation = MlpActivation::kRelu2;
  } else if (act != "silu") {
    reader.Fail("mlp_hidden_act", "= \"" + act + "\" is not supported (silu or relu2)");
  }
  if (auto norm = reader.String("kq_norm").value_or("none"); norm == "rms") {
    config.kq_norm = true;
  } else if (norm != "none") {
    reader.Fail("kq_norm", "= \"" + norm + "\" is not supported (none or rms)");
  }

  config.num_memory_tokens = reader.Int("num_memory_tokens", 0);
  if (config.num_memory_tokens < 0) reader.Fail("num_memory_tokens", "must be >= 0");
  RequireAtMost(reader, "num_memory_tokens", config.num_memory_tokens, kMaxDimension);
  if (const int64_t every = reader.Int("memory_tokens_interspersed_every", 0); every > 0) {
    reader.Fail("memory_tokens_interspersed_every", "= " + std::to_string(every) + " is not supported (only 0)");
  }
  if (const int64_t experts = reader.Int("num_experts", 1); experts != 1) {
    reader.Fail("num_experts", "= " + std::to_string(experts) + " is not supported (only 1)");
  }
  if (reader.Has("layer_type")) {
    const json& types = reader.Raw("layer_type");
    if (!types.is_array()) reader.Fail("layer_type", "must be a list");
    for (const json& type : types) {
      if (type != "h") reader.Fail("layer_type", "contains " + JsonExcerpt(type) + "; only hybrid \"h\" layers are supported");
    }
  }

  config.max_position_embeddings = reader.Int("max_position_embeddings", 262144);
  RequirePositive(reader, "max_position_embeddings", config.max_position_embeddings);
  RequireAtMost(reader, "max_position_embeddings", config.max_position_embeddings, kMaxPositions);
  config.rope = reader.Bool("rope", false);
  config.rope_theta = reader.Number("rope_theta", 10000.0);
  if (!(config.rope_theta > 0)) reader.Fail("rope_theta", "must be positive");
  if (auto type = reader.String("rope_type").value_or("default"); type == "ntk") {
    config.rope_type = RopeType::kNtk;
    config.orig_max_position_embeddings = reader.Int("orig_max_position_embeddings", std::nullopt);
    RequirePositive(reader, "orig_max_position_embeddings", config.orig_max_position_embeddings);
    RequireAtMost(reader, "orig_max_position_embeddings", config.orig_max_position_embeddings, kMaxPositions);
    if (config.rope && config.head_dim_qk <= 2) reader.Fail("rope_type", "\"ntk\" needs a head dimension above 2");
    // The NTK base is theta * (2 * max / orig - 1)^(d / (d - 2)) (spec 3.8): not a
    // positive number unless max exceeds orig / 2 (the official code computes NaN).
    if (config.rope && 2 * config.max_position_embeddings <= config.orig_max_position_embeddings) {
      reader.Fail("max_position_embeddings", std::to_string(config.max_position_embeddings) +
                                                 " with rope_type \"ntk\" must exceed half of orig_max_position_embeddings (" +
                                                 std::to_string(config.orig_max_position_embeddings) +
                                                 "): the NTK base would not be a positive number");
    }
  } else if (type != "default") {
    reader.Fail("rope_type", "= \"" + type + "\" is not supported (null, \"default\" or \"ntk\")");
  }
  if (config.rope && config.head_dim_qk % 2 != 0) {
    reader.Fail("num_attention_heads", "gives an odd head dimension " + std::to_string(config.head_dim_qk) + ", which RoPE cannot rotate");
  }

  config.sliding_window = reader.Has("sliding_window") ? reader.Int("sliding_window", std::nullopt) : -1;
  if (reader.Has("sliding_window") && config.sliding_window < 0) {
    reader.Fail("sliding_window", "must be null or >= 0, got " + std::to_string(config.sliding_window));
  }
  RequireAtMost(reader, "sliding_window", config.sliding_window, kMaxPositions);
  if (reader.Has("global_attn_idx")) {
    config.global_attn_idx = reader.LayerList("global_attn_idx", reader.Raw("global_attn_idx"), config.num_hidden_layers);
  } else if (config.HasSlidingWindow()) {
    reader.Fail("global_attn_idx", "is missing; it is required when sliding_window is set");
  }
  if (reader.Has("kv_reuse_group")) {
    const json& groups = reader.Raw("kv_reuse_group");
    if (!groups.is_array()) reader.Fail("kv_reuse_group", "must be a list of layer lists");
    for (const json& group : groups) {
      config.kv_reuse_group.push_back(reader.LayerList("kv_reuse_group", group, config.num_hidden_layers));
      if (config.kv_reuse_group.back().empty()) reader.Fail("kv_reuse_group", "contains an empty group");
    }
  }
  const int64_t reuse_every = reader.Int("kv_reuse_every_i_layer", -1);
  RequireAtMost(reader, "kv_reuse_every_i_layer", reuse_every, kMaxLayers);
  config.kv_reuse_every_i_layer = static_cast<int>(std::max<int64_t>(reuse_every, -1));  // <= 0: no reuse
  AssignKvRoles(reader, config);

  config.rms_norm_eps = reader.Number("rms_norm_eps", 1e-6);
  if (!(config.rms_norm_eps > 0)) reader.Fail("rms_norm_eps", "must be positive");
  config.tie_word_embeddings = reader.Bool("tie_word_embeddings", false);
  config.bos_token_id = reader.Int("bos_token_id", 1);
  config.pad_token_id = reader.Int("pad_token_id", 0);
  if (reader.Has("eos_token_id") && reader.Raw("eos_token_id").is_array()) {
    config.eos_token_ids.clear();
    for (const json& id : reader.Raw("eos_token_id")) config.eos_token_ids.push_back(reader.AsInt("eos_token_id", id));
  } else {
    config.eos_token_ids = {reader.Int("eos_token_id", 2)};
  }
  if (config.eos_token_ids.empty()) reader.Fail("eos_token_id", "is an empty list");
  for (int64_t id : config.eos_token_ids) {
    if (id < 0 || id >= config.vocab_size) {
      reader.Fail("eos_token_id", std::to_string(id) + " is outside the vocabulary (vocab_size " +
                                      std::to_string(config.vocab_size) + ")");
    }
  }
  return config;
}

Config LoadConfig(const std::filesystem::path& config_json) {
  return ParseConfig(ReadSmallFile(config_json), config_json.string());
}

}  // namespace hymba
