// GGUF: writer and reader round trips, models converted from every fixture
// against the HF-loaded ones, and hostile files (each refused with a clear
// error, never a crash).
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "hymba/convert.h"
#include "hymba/error.h"
#include "hymba/model.h"
#include "hymba/tokenizer.h"
#include "core/mat_view.h"
#include "io/gguf_keys.h"
#include "kernels/quantize.h"
#include "test_util.h"

namespace hymba {
namespace {

const std::filesystem::path kShipped = test::ShippedModelDir();

std::filesystem::path Convert(const test::TempDir& dir, const std::filesystem::path& model, const std::string& type) {
  const std::filesystem::path out = dir / (model.filename().string() + "-" + type + ".gguf");
  ConvertToGguf(model, out, type);
  return out;
}

using test::ExpectError;

TEST(Gguf, MetadataAndTensorsRoundTrip) {
  test::TempDir dir;
  GgufWriter writer;
  writer.Set("general.architecture", GgufValue::String("hymba"));
  writer.Set("some.count", GgufValue::Uint32(7));
  writer.Set("some.real", GgufValue::Float64(0.1));
  writer.Set("some.flag", GgufValue::Bool(true));
  writer.Set("some.bytes", GgufValue::Bytes(std::string("\0\1\2\xff", 4)));
  const std::vector<float> values = {1.5f, -2.25f, 3.0f, 0.0f, 8.0f, -1.0f};
  writer.AddTensor("matrix", GgmlType::kF32, {3, 2}, [&](std::span<std::byte> out) {
    ASSERT_EQ(out.size(), 24u);
    std::memcpy(out.data(), values.data(), 24);
  });
  std::vector<float> row(64);
  for (size_t i = 0; i < row.size(); ++i) row[i] = std::sin(static_cast<float>(i));
  writer.AddTensor("quantized", GgmlType::kQ8_0, {64, 1}, [&](std::span<std::byte> out) {
    ASSERT_EQ(out.size(), 68u);
    QuantizeRow(DType::kQ8_0, row, out.data());
  });
  writer.Write(dir / "x.gguf");

  const GgufFile file(dir / "x.gguf");
  EXPECT_EQ(file.GetString("general.architecture"), "hymba");
  EXPECT_EQ(file.Get("some.count").value.get<uint32_t>(), 7u);
  EXPECT_EQ(file.Get("some.real").value.get<double>(), 0.1);
  EXPECT_EQ(file.Get("some.flag").value.get<bool>(), true);
  EXPECT_EQ(file.Get("some.bytes").bytes, std::string("\0\1\2\xff", 4));
  EXPECT_EQ(file.Get("general.alignment").value.get<uint32_t>(), 32u);
  ASSERT_EQ(file.tensors().size(), 2u);
  const GgufTensor& matrix = file.tensors()[0];
  EXPECT_EQ(matrix.name, "matrix");
  EXPECT_EQ(matrix.dims, (std::vector<int64_t>{3, 2}));
  ASSERT_EQ(matrix.data.size(), 24u);
  EXPECT_EQ(std::memcmp(matrix.data.data(), values.data(), 24), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(file.tensors()[1].data.data()) % 32, 0u);  // aligned in the mapped file
  for (size_t i = 0; i < 64; ++i) EXPECT_NEAR(LoadAsF32(DType::kQ8_0, file.tensors()[1].data.data(), i), row[i], 0.01);
}

// An f32 file holds exactly the checkpoint's values, whatever their stored
// types, and the kernels accumulate every storage type in the same order, so
// the logits are bit-identical to the HF-loaded model's.
TEST(Gguf, ConvertedFixturesGiveIdenticalLogits) {
  test::TempDir dir;
  for (const std::string& name : test::FixtureNames()) {
    SCOPED_TRACE(name);
    const std::filesystem::path fixture = test::FixtureDir(name);
    const nlohmann::json tokens = test::ReadJson(fixture / "tokens.json");
    const std::vector<int32_t> ids = tokens.get<std::vector<int32_t>>();
    const Model hf = Model::Load(fixture, 1);
    const std::vector<float> expected = hf.Logits(ids);
    const Model gguf = Model::Load(Convert(dir, fixture, "f32"), 1);
    EXPECT_EQ(gguf.Logits(ids), expected);
    EXPECT_EQ(gguf.config().eos_token_ids, hf.config().eos_token_ids);
    EXPECT_EQ(gguf.storage().parameters, hf.storage().parameters);
  }
}

double MeanKl(const std::vector<float>& base, const std::vector<float>& other, size_t vocab, double* top1) {
  double kl = 0;
  size_t agree = 0;
  const size_t rows = base.size() / vocab;
  for (size_t r = 0; r < rows; ++r) {
    const float* p = &base[r * vocab];
    const float* q = &other[r * vocab];
    double max_p = -INFINITY, max_q = -INFINITY, zp = 0, zq = 0;
    size_t arg_p = 0, arg_q = 0;
    for (size_t i = 0; i < vocab; ++i) {
      if (p[i] > max_p) max_p = p[i], arg_p = i;
      if (q[i] > max_q) max_q = q[i], arg_q = i;
    }
    for (size_t i = 0; i < vocab; ++i) zp += std::exp(p[i] - max_p), zq += std::exp(q[i] - max_q);
    for (size_t i = 0; i < vocab; ++i) {
      const double lp = p[i] - max_p - std::log(zp), lq = q[i] - max_q - std::log(zq);
      kl += std::exp(lp) * (lp - lq);
    }
    agree += arg_p == arg_q;
  }
  *top1 = static_cast<double>(agree) / static_cast<double>(rows);
  return kl / static_cast<double>(rows);
}

// The shipped model in each quantized type against its f32 run: the
// divergence grows as the bits shrink, and stays small.
TEST(Gguf, QuantizedShippedModelStaysCloseToF32) {
  test::TempDir dir;
  const Tokenizer tokenizer = Tokenizer::Load(kShipped);
  const std::vector<int32_t> ids = tokenizer.Encode(
      "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness "
      "was upon the face of the deep. And the Spirit of God moved upon the face of the waters.",
      {});
  const Model base = Model::Load(Convert(dir, kShipped, "f32"), 1);
  const std::vector<float> reference = base.Logits(ids);
  const size_t vocab = static_cast<size_t>(base.config().vocab_size);
  double top1_bf16 = 0, top1_q8 = 0, top1_q4 = 0;
  const double kl_bf16 = MeanKl(reference, Model::Load(Convert(dir, kShipped, "bf16"), 1).Logits(ids), vocab, &top1_bf16);
  const double kl_q8 = MeanKl(reference, Model::Load(Convert(dir, kShipped, "q8_0"), 1).Logits(ids), vocab, &top1_q8);
  const double kl_q4 = MeanKl(reference, Model::Load(Convert(dir, kShipped, "q4_0"), 1).Logits(ids), vocab, &top1_q4);
  EXPECT_EQ(kl_bf16, 0.0);  // the shipped weights are bf16: nothing is lost
  EXPECT_GT(kl_q8, 0.0);
  EXPECT_LT(kl_q8, 0.01);
  EXPECT_GT(top1_q8, 0.9);
  EXPECT_GT(kl_q4, kl_q8);
  EXPECT_LT(kl_q4, 0.2);
  EXPECT_GT(top1_q4, 0.7);
}

// Compute type bf16 changes only products with bf16 weights, and little.
TEST(Gguf, Bf16ComputeStaysCloseToF32) {
  test::TempDir dir;
  const Tokenizer tokenizer = Tokenizer::Load(kShipped);
  const std::vector<int32_t> ids = tokenizer.Encode("And God said, Let there be light: and there was light.", {});
  const std::filesystem::path f32 = Convert(dir, kShipped, "f32");
  const Model base = Model::Load(f32, 1);
  const std::vector<float> reference = base.Logits(ids);
  const Model bf16 = Model::Load(kShipped, 1, {.compute = ComputeType::kBF16});  // the shipped weights are bf16
  EXPECT_EQ(bf16.numerics().compute, ComputeType::kBF16);
  EXPECT_EQ(bf16.type_label(), "BF16 (bf16 compute)");
  EXPECT_EQ(base.type_label(), "F32");
  double top1 = 0;
  const double kl = MeanKl(reference, bf16.Logits(ids), static_cast<size_t>(base.config().vocab_size), &top1);
  EXPECT_GT(kl, 0.0);
  EXPECT_LT(kl, 1e-3);
  EXPECT_GT(top1, 0.9);
  EXPECT_EQ(Model::Load(f32, 1, {.compute = ComputeType::kBF16}).Logits(ids), reference) << "f32 weights must not change";
}

// A model's matrices are rewritten in memory for the matrix kernels; every
// weight must decode as the file stores it, and the file on disk must not
// change. A lazily mapped file cannot be rewritten.
TEST(Gguf, InterleavingKeepsEveryWeight) {
  test::TempDir dir;
  for (const std::string type : {"f32", "f16", "bf16", "q8_0", "q4_0"}) {
    const std::filesystem::path path = Convert(dir, kShipped, type);
    const auto size_before = std::filesystem::file_size(path);
    const GgufFile original(path);
    for (const bool bf16_products : {false, true}) {
      SCOPED_TRACE(bf16_products ? "for bf16 products" : "for f32 products");
      GgufFile interleaved(path);
      interleaved.InterleaveMatrices(bf16_products);
      size_t matrices = 0, paired = 0;
      for (size_t i = 0; i < original.tensors().size(); ++i) {
        const GgufTensor& before = original.tensors()[i];
        const GgufTensor& after = interleaved.tensors()[i];
        const std::optional<DType> dtype = DTypeFromGgml(before.ggml_type);
        ASSERT_TRUE(dtype.has_value());
        const Layout expected = before.dims.size() != 2 ? Layout::kRowMajor
                                : *dtype == DType::kBF16 && bf16_products ? Layout::kBf16Pairs
                                                                  : Layout::kGroups;
        ASSERT_EQ(after.layout, expected) << before.name;
        if (after.layout == Layout::kRowMajor) continue;
        ++matrices;
        paired += after.layout == Layout::kBf16Pairs ? 1 : 0;
        const auto rows = static_cast<size_t>(before.dims[1]), cols = static_cast<size_t>(before.dims[0]);
        const MatView view{*dtype, after.data.data(), rows, cols, after.layout};
        std::vector<float> row(cols);
        for (size_t r = 0; r < rows; ++r) {
          view.DecodeRow(r, row);
          for (size_t c = 0; c < cols; ++c) {
            ASSERT_EQ(row[c], LoadAsF32(*dtype, before.data.data() + r * RowBytes(*dtype, cols), c)) << before.name;
          }
        }
      }
      EXPECT_GT(matrices, 10u) << type;
      if (type == "bf16" && bf16_products) {
        EXPECT_GT(paired, 10u);
      }
    }
    EXPECT_EQ(std::filesystem::file_size(path), size_before);
    const GgufFile reread(path);
    for (size_t i = 0; i < original.tensors().size(); ++i) {
      const std::span<const std::byte> a = original.tensors()[i].data, b = reread.tensors()[i].data;
      ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << "the file changed: " << original.tensors()[i].name;
    }
    GgufFile mapped(path, FileAccess::kMap);
    ExpectError([&] { mapped.InterleaveMatrices(false); }, {path.string(), "mapped"});
  }
}

TEST(Gguf, TokenizerAndChatTemplateTravelInTheFile) {
  test::TempDir dir;
  const std::filesystem::path fixture = test::FixtureDir("real_tokenizer_bf16");
  const std::filesystem::path gguf = Convert(dir, fixture, "bf16");
  const Tokenizer from_dir = Tokenizer::Load(fixture);
  const Tokenizer from_gguf = Tokenizer::Load(gguf);
  const nlohmann::json cases = test::ReadJson(test::DataDir() / "tokenizer_cases.json");
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    for (bool special : {true, false}) {
      EXPECT_EQ(from_gguf.Encode(text, {.add_bos = true, .parse_special = special}),
                from_dir.Encode(text, {.add_bos = true, .parse_special = special}));
    }
  }
  EXPECT_EQ(from_gguf.chat_template(), from_dir.chat_template());
  EXPECT_FALSE(from_gguf.chat_template().empty());
  EXPECT_EQ(from_gguf.bos_id(), from_dir.bos_id());
  EXPECT_EQ(from_gguf.vocab_size(), from_dir.vocab_size());
  EXPECT_EQ(GgufFile(gguf).GetString("tokenizer.chat_template"), from_dir.chat_template());
}

TEST(Gguf, ConvertRefusesBadRequestsAndNeverOverwrites) {
  test::TempDir dir;
  test::WriteText(dir / "precious.gguf", "user data");
  ExpectError([&] { ConvertToGguf(kShipped, dir / "precious.gguf", "q8_0"); }, {"precious.gguf", "already exists"});
  EXPECT_EQ(test::ReadText(dir / "precious.gguf"), "user data");
  ExpectError([&] { ConvertToGguf(kShipped, dir / "x.gguf", "q5_k"); }, {"q5_k"});
  ExpectError([&] { ConvertToGguf(dir / "missing", dir / "x.gguf", "f16"); }, {"missing"});
  EXPECT_FALSE(std::filesystem::exists(dir / "x.gguf"));
  EXPECT_FALSE(std::filesystem::exists(dir / "x.gguf.partial"));
}

TEST(Gguf, ConvertCommandShowsProgressAndRunsEverything) {
  test::TempDir dir;
  const std::string out = (dir / "tiny.gguf").string();
  const test::CommandResult convert = test::RunCli({"convert", kShipped.string(), "-o", out, "--type", "q8_0"});
  ASSERT_EQ(convert.exit_code, 0) << convert.err;
  EXPECT_NE(convert.err.find("79/79 tensors"), std::string::npos) << convert.err;
  const test::CommandResult generate = test::RunCli({"generate", "-m", out, "-p", "And God said", "-n", "8", "--seed", "3"});
  EXPECT_EQ(generate.exit_code, 0) << generate.err;
  EXPECT_FALSE(generate.out.empty());
  const test::CommandResult info = test::RunCli({"info", "-m", out, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("Q8_0"), std::string::npos);
  const test::CommandResult bad = test::RunCli({"convert", kShipped.string(), "-o", out + "2", "--type", "q3"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(out + "2"));
}

// A small valid file to break in many ways.
std::string ValidFile(const test::TempDir& dir) {
  const std::filesystem::path path = Convert(dir, kShipped, "q4_0");
  return test::ReadText(path);
}

std::filesystem::path WriteBytes(const test::TempDir& dir, const std::string& bytes) {
  const std::filesystem::path path = dir / "broken.gguf";
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

template <typename T>
void Poke(std::string& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

TEST(GgufHostile, HeaderFieldsAreChecked) {
  test::TempDir dir;
  const std::string valid = ValidFile(dir);
  auto load = [&](const std::string& bytes) { return [&dir, bytes] { Model::Load(WriteBytes(dir, bytes), 1); }; };

  std::string bad = valid;
  bad[0] = 'X';
  ExpectError(load(bad), {"neither a model directory nor a GGUF file"});
  bad = valid;
  Poke<uint32_t>(bad, 4, 2);
  ExpectError(load(bad), {"version 2 is not supported"});
  bad = valid;
  Poke<uint64_t>(bad, 8, uint64_t{1} << 60);
  ExpectError(load(bad), {"tensor count", "cannot fit"});
  bad = valid;
  Poke<uint64_t>(bad, 16, uint64_t{1} << 60);
  ExpectError(load(bad), {"metadata count", "cannot fit"});
  bad = valid;
  Poke<uint64_t>(bad, 24, uint64_t{1} << 50);  // length of the first key
  ExpectError(load(bad), {"beyond the end of the file"});
  ExpectError(load(valid.substr(0, valid.size() - 100)), {"beyond the end of the file", "truncated"});
  ExpectError(load(valid.substr(0, 20)), {"file ends inside"});
}

// Finds the tensor-info record of `name` in a valid file: the bytes after the
// name are n_dims, dims, type, offset.
size_t TensorInfoAfterName(const std::string& bytes, const std::string& name) {
  std::string needle(8, '\0');
  const uint64_t length = name.size();
  std::memcpy(needle.data(), &length, 8);
  needle += name;
  const size_t at = bytes.find(needle);
  EXPECT_NE(at, std::string::npos);
  return at + needle.size();
}

TEST(GgufHostile, TensorRecordsAreChecked) {
  test::TempDir dir;
  const std::string valid = ValidFile(dir);
  auto load = [&](const std::string& bytes) { return [&dir, bytes] { Model::Load(WriteBytes(dir, bytes), 1); }; };
  const size_t info = TensorInfoAfterName(valid, "model.layers.0.mamba.in_proj.weight");
  const size_t type_at = info + 4 + 2 * 8, offset_at = type_at + 4;

  std::string bad = valid;
  Poke<uint32_t>(bad, type_at, 14);  // Q6_K: valid in ggml, not supported here
  ExpectError(load(bad), {"model.layers.0.mamba.in_proj.weight", "tensor type 14 is not supported"});
  bad = valid;
  Poke<uint32_t>(bad, info, 0);
  ExpectError(load(bad), {"0 dimensions"});
  bad = valid;
  Poke<uint64_t>(bad, info + 4, 0);
  ExpectError(load(bad), {"dimension 0 is out of range"});
  bad = valid;
  Poke<uint64_t>(bad, info + 4, 100);  // rows of 100 are not whole q4_0 blocks
  ExpectError(load(bad), {"not whole blocks"});
  bad = valid;
  Poke<uint64_t>(bad, offset_at, uint64_t{1} << 40);
  ExpectError(load(bad), {"in_proj.weight", "beyond the end of the file"});
  bad = valid;
  Poke<uint64_t>(bad, offset_at, 3);
  ExpectError(load(bad), {"not aligned"});
  bad = valid;
  Poke<uint64_t>(bad, info + 4, 64);  // consistent file, wrong shape for the config
  ExpectError(load(bad), {"in_proj.weight", "shape"});
}

TEST(GgufHostile, MetadataIsChecked) {
  test::TempDir dir;
  auto write = [&](const std::function<void(GgufWriter&)>& edit) {
    const GgufFile source(Convert(dir, kShipped, "f16"));
    GgufWriter writer;
    for (const auto& [key, value] : source.metadata()) {
      if (key != "general.alignment") writer.Set(key, value);
    }
    for (const GgufTensor& t : source.tensors()) {
      writer.AddTensor(t.name, static_cast<GgmlType>(t.ggml_type), t.dims,
                       [&t](std::span<std::byte> out) { std::memcpy(out.data(), t.data.data(), out.size()); });
    }
    edit(writer);
    const std::filesystem::path path = dir / "edited.gguf";
    std::filesystem::remove(path);
    writer.Write(path);
    std::filesystem::remove(dir / "hymba-kjv-tiny-f16.gguf");
    return path;
  };
  const std::filesystem::path other = write([](GgufWriter& w) { w.Set("general.architecture", GgufValue::String("llama")); });
  ExpectError([&] { Model::Load(other, 1); }, {"general.architecture is \"llama\""});
  const std::filesystem::path inconsistent =
      write([](GgufWriter& w) { w.Set("hymba.block_count", GgufValue::Uint32(40)); });
  ExpectError([&] { Model::Load(inconsistent, 1); }, {"hymba.block_count", "40"});
  const std::filesystem::path broken_config =
      write([](GgufWriter& w) { w.Set(gguf_keys::kConfig, GgufValue::String("{\"hidden_size\": ")); });
  ExpectError([&] { Model::Load(broken_config, 1); }, {gguf_keys::kConfig});
  const std::filesystem::path no_tokenizer =
      write([](GgufWriter& w) { w.Set(gguf_keys::kSentencePiece, GgufValue::String("not bytes")); });
  ExpectError([&] { Tokenizer::Load(no_tokenizer); }, {gguf_keys::kSentencePiece, "not a byte array"});
}

// Truncations and byte flips all over the header (the start, and every
// tensor record): each load either works or throws hymba::Error; never a
// crash, a hang or an out-of-bounds read (the sanitizer build runs this too).
TEST(GgufHostile, TruncationsAndByteFlipsNeverCrash) {
  test::TempDir dir;
  const std::string valid = ValidFile(dir);
  // Records are written in name order: embed_tokens first, memory_tokens last.
  const size_t records_begin = TensorInfoAfterName(valid, "model.embed_tokens.weight") - 40;
  const size_t records_end = TensorInfoAfterName(valid, "model.memory_tokens") + 40;
  std::vector<size_t> positions;
  for (size_t at = 0; at < 2048; ++at) positions.push_back(at);
  for (size_t at = records_begin; at < records_end; ++at) positions.push_back(at);
  size_t loaded = 0;
  auto attempt = [&](const std::string& bytes) {
    try {
      const Model model = Model::Load(WriteBytes(dir, bytes), 1);
      model.Logits(std::vector<int32_t>{5, 6, 7});
      ++loaded;
    } catch (const Error&) {
    }
  };
  // Every 7th truncation and every 5th flip: strides prime to the field
  // sizes, so every byte of a count or an offset gets its turn somewhere.
  // Each attempt loads a model (about 50 ms under ASan); the gguf fuzz target
  // explores the rest.
  for (size_t i = 0; i < positions.size(); i += 7) attempt(valid.substr(0, positions[i]));
  for (size_t i = 0; i < positions.size(); i += 5) {
    std::string flipped = valid;
    flipped[positions[i]] = static_cast<char>(flipped[positions[i]] ^ 0x5a);
    attempt(flipped);
  }
  EXPECT_GT(loaded, 0u);  // some flips (inside strings, say) leave a loadable file
}

// The handcrafted bad files of llama.cpp's test-gguf, on a small converted
// fixture: each refused by the reader with the field named.
TEST(GgufHostile, HandcraftedBadFilesAreRefused) {
  test::TempDir dir;
  const std::string valid = test::ReadText(Convert(dir, test::DataDir() / "fixtures" / "every_i_f16_noswa", "q8_0"));
  auto open = [&](const std::string& bytes) { return [&dir, bytes] { GgufFile(WriteBytes(dir, bytes), FileAccess::kMap); }; };
  auto poked = [&](size_t offset, auto value) {
    std::string bytes = valid;
    Poke(bytes, offset, value);
    return bytes;
  };
  ExpectError(open(poked(8, ~uint64_t{0})), {"tensor count 18446744073709551615 cannot fit"});
  ExpectError(open(poked(16, ~uint64_t{0})), {"metadata count 18446744073709551615 cannot fit"});
  ExpectError(open(poked(24, ~uint64_t{0})), {"metadata key 0", "beyond the end of the file"});
  ExpectError(open(poked(24, uint64_t{0})), {"metadata key 0 is empty"});

  // Another key's name over the first key's, same length: a duplicate key.
  const GgufFile parsed(WriteBytes(dir, valid), FileAccess::kMap);
  const std::string first_key = parsed.metadata().begin()->first;
  std::string twin;
  for (const auto& [key, value] : parsed.metadata()) {
    if (key != first_key && key.size() == first_key.size()) twin = key;
  }
  ASSERT_FALSE(twin.empty()) << "no two keys of equal length";
  std::string duplicate_key = valid;
  duplicate_key.replace(valid.find(first_key), first_key.size(), twin);
  ExpectError(open(duplicate_key), {"metadata key \"" + twin + "\" appears twice"});

  const std::string name0 = "model.layers.0.mamba.in_proj.weight", name1 = "model.layers.1.mamba.in_proj.weight";
  std::string duplicate_tensor = valid;
  duplicate_tensor.replace(TensorInfoAfterName(valid, name1) - name1.size(), name1.size(), name0);
  ExpectError(open(duplicate_tensor), {name0, "the name appears twice"});
  std::string empty_name = valid;
  Poke<uint64_t>(empty_name, TensorInfoAfterName(valid, name0) - name0.size() - 8, 0);
  ExpectError(open(empty_name), {"has an empty name"});

  const size_t info = TensorInfoAfterName(valid, name0);  // n_dims, dims[2], type, offset
  ExpectError(open(poked(info, uint32_t{5})), {name0, "5 dimensions (1 to 4 are valid)"});
  ExpectError(open(poked(info, ~uint32_t{0})), {name0, "4294967295 dimensions"});
  ExpectError(open(poked(info + 4, uint64_t{0})), {name0, "dimension 0 is out of range"});
  ExpectError(open(poked(info + 4, ~uint64_t{0})), {name0, "out of range"});
  std::string overflowing = poked(info + 4, uint64_t{1} << 40);  // 2^40 x 2^40 elements
  Poke<uint64_t>(overflowing, info + 12, uint64_t{1} << 40);
  ExpectError(open(overflowing), {name0, "more than 2^48 elements"});
  ExpectError(open(poked(info + 20, uint32_t{99})), {name0, "tensor type 99 is not supported"});
  ExpectError(open(poked(info + 24, uint64_t{3})), {name0, "offset 3 is not aligned"});
  ExpectError(open(poked(info + 24, ~uint64_t{0} - 31)), {name0, "beyond the end of the file"});
  // The second tensor's bytes moved onto the first's: inconsistent sizes.
  const size_t other = TensorInfoAfterName(valid, name1);
  ExpectError(open(poked(other + 24, uint64_t{0})), {"overlaps"});

  // The writer puts general.alignment first: its type at byte 49, its value at 53.
  ASSERT_EQ(valid.substr(32, 17), "general.alignment");
  for (uint32_t alignment : {0u, 48u}) {
    ExpectError(open(poked(53, alignment)), {"general.alignment must be a power of two"});
  }
  ExpectError(open(poked(49, static_cast<uint32_t>(GgufValueType::kInt32))), {"general.alignment", "uint32"});
}

// Every byte of a small GGUF matters: the file cut short anywhere, at every
// section boundary and inside every field and tensor, is refused. Only the
// zero padding after the last tensor may go.
TEST(GgufHostile, TruncatedAtEveryByteIsRefused) {
  test::TempDir dir;
  const std::string valid = test::ReadText(Convert(dir, test::DataDir() / "fixtures" / "every_i_f16_noswa", "q4_0"));
  const GgufFile whole(WriteBytes(dir, valid), FileAccess::kMap);
  const std::byte* data_begin = whole.tensors().front().data.data();
  const std::byte* data_end = data_begin;
  for (const GgufTensor& t : whole.tensors()) {
    data_begin = std::min(data_begin, t.data.data());
    data_end = std::max(data_end, t.data.data() + t.data.size());
  }
  const auto used = static_cast<size_t>(data_end - data_begin), padded = (used + 31) / 32 * 32;
  const size_t needed = valid.size() - padded + used;
  const std::filesystem::path path = WriteBytes(dir, valid);
  for (size_t length = valid.size(); length-- > 0;) {  // shrinking one file: cheap enough for every byte
    std::filesystem::resize_file(path, length);
    try {
      GgufFile(path, FileAccess::kMap);
      EXPECT_GE(length, needed) << "accepted the first " << length << " of " << valid.size() << " bytes";
    } catch (const Error&) {
      EXPECT_LT(length, needed) << "refused a file cut only in its final padding";
    }
  }
}

}  // namespace
}  // namespace hymba
