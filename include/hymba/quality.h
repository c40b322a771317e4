// `hymba perplexity`: how well a model predicts a text, and how far a
// converted (quantized) model drifts from a base model on the same tokens, as
// llama-perplexity's --kl-divergence reports it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "hymba/model.h"

namespace hymba {

struct QualityOptions {
  std::filesystem::path model;
  std::filesystem::path text_file;
  int context = 128;        // tokens per chunk; each chunk starts a fresh sequence
  int max_chunks = 0;       // 0 = every whole chunk of the text
  std::optional<std::filesystem::path> base_model;  // compare against this model's distributions
  size_t threads = 0;
  Numerics numerics{};  // of `model`; the base model computes with the defaults
};

struct QualityReport {
  std::string model_name, weight_type;
  int chunks = 0;
  int64_t tokens_scored = 0;  // every token of a chunk but its first is predicted and scored
  double perplexity = 0;
  // Against the base model, when given: mean KL(base || model) per token and
  // the share of positions where both models' most likely token agree.
  std::optional<double> base_perplexity, mean_kl, top1_agreement;
};

QualityReport MeasureQuality(const QualityOptions& options);

}  // namespace hymba
