#include "hymba/quality.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "hymba/error.h"
#include "hymba/model.h"
#include "hymba/tokenizer.h"

namespace hymba {
namespace {

// log-softmax of one row of logits, in double.
std::vector<double> LogProbabilities(const float* logits, size_t vocab) {
  const double max_logit = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (size_t i = 0; i < vocab; ++i) sum += std::exp(logits[i] - max_logit);
  const double log_sum = std::log(sum) + max_logit;
  std::vector<double> out(vocab);
  for (size_t i = 0; i < vocab; ++i) out[i] = logits[i] - log_sum;
  return out;
}

}  // namespace

QualityReport MeasureQuality(const QualityOptions& options) {
  if (options.context < 2) throw Error("perplexity: -c must be at least 2, got " + std::to_string(options.context));
  if (options.max_chunks < 0) throw Error("perplexity: --chunks must be >= 0");
  std::ifstream in(options.text_file, std::ios::binary);
  if (!in) throw Error(options.text_file.string() + ": cannot open the text file");
  std::stringstream text;
  text << in.rdbuf();

  const Model model = Model::Load(options.model, options.threads, options.numerics);
  const Tokenizer tokenizer = Tokenizer::Load(options.model);
  const std::vector<int32_t> tokens = tokenizer.Encode(text.str(), {.add_bos = false, .parse_special = false});
  const auto context = static_cast<size_t>(options.context);
  size_t chunks = tokens.size() / context;
  if (options.max_chunks > 0) chunks = std::min(chunks, static_cast<size_t>(options.max_chunks));
  if (chunks == 0) {
    throw Error(options.text_file.string() + ": " + std::to_string(tokens.size()) + " tokens, fewer than one chunk of " +
                std::to_string(context));
  }
  std::optional<Model> base;
  if (options.base_model) {
    base.emplace(Model::Load(*options.base_model, options.threads));
    if (base->config().vocab_size != model.config().vocab_size) {
      throw Error(options.base_model->string() + ": vocabulary of " + std::to_string(base->config().vocab_size) +
                  " tokens, the model has " + std::to_string(model.config().vocab_size));
    }
  }

  const auto vocab = static_cast<size_t>(model.config().vocab_size);
  double nll = 0, base_nll = 0, kl = 0;
  int64_t scored = 0, agree = 0;
  for (size_t chunk = 0; chunk < chunks; ++chunk) {
    const std::span<const int32_t> ids(&tokens[chunk * context], context);
    Sequence sequence = model.NewSequence();
    const std::vector<float> logits = model.Append(sequence, ids, true);
    std::vector<float> base_logits;
    if (base) {
      Sequence base_sequence = base->NewSequence();
      base_logits = base->Append(base_sequence, ids, true);
    }
    for (size_t j = 0; j + 1 < context; ++j) {
      const std::vector<double> log_p = LogProbabilities(&logits[j * vocab], vocab);
      nll -= log_p[static_cast<size_t>(ids[j + 1])];
      ++scored;
      if (!base) continue;
      const std::vector<double> log_q = LogProbabilities(&base_logits[j * vocab], vocab);
      base_nll -= log_q[static_cast<size_t>(ids[j + 1])];
      for (size_t i = 0; i < vocab; ++i) kl += std::exp(log_q[i]) * (log_q[i] - log_p[i]);
      agree += std::max_element(log_p.begin(), log_p.end()) - log_p.begin() ==
               std::max_element(log_q.begin(), log_q.end()) - log_q.begin();
    }
  }
  QualityReport report;
  report.model_name = options.model.filename().string();
  report.weight_type = model.type_label();
  report.chunks = static_cast<int>(chunks);
  report.tokens_scored = scored;
  report.perplexity = std::exp(nll / static_cast<double>(scored));
  if (base) {
    report.base_perplexity = std::exp(base_nll / static_cast<double>(scored));
    report.mean_kl = kl / static_cast<double>(scored);
    report.top1_agreement = static_cast<double>(agree) / static_cast<double>(scored);
  }
  return report;
}

}  // namespace hymba
