// One hand-built file per failure class: each must be refused with a message
// that names the file and the problem, never read out of bounds.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include "hymba/error.h"
#include "test_util.h"

namespace hymba {
namespace {

std::string FileWithHeader(const std::string& header, const std::string& data, uint64_t claimed_length) {
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<char>((claimed_length >> (8 * i)) & 0xff);
  return file + header + data;
}

std::string FileWithHeader(const std::string& header, const std::string& data) {
  return FileWithHeader(header, data, header.size());
}

class SafetensorsTest : public ::testing::Test {
 protected:
  std::filesystem::path Write(const std::string& bytes) {
    const std::filesystem::path path = dir_ / "model.safetensors";
    test::WriteText(path, bytes);
    return path;
  }

  void ExpectRefused(const std::string& bytes, const std::string& fragment) {
    const std::filesystem::path path = Write(bytes);
    try {
      SafetensorsFile file(path);
      ADD_FAILURE() << "accepted a file that should fail with: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }

  test::TempDir dir_;
};

TEST_F(SafetensorsTest, ReadsValidFileWithMetadataAndEmptyTensor) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]},"e":{"dtype":"F16","shape":[0],"data_offsets":[14,14]},)"
      R"("i":{"dtype":"I64","shape":[1],"data_offsets":[14,22]}})";
  const SafetensorsFile file(Write(FileWithHeader(header, std::string(22, '\x01'))));
  ASSERT_EQ(file.tensors().size(), 4u);
  const TensorRecord& b = file.tensors().at("b");
  EXPECT_EQ(b.dtype, DType::kBF16);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(b.data.size(), 6u);
  EXPECT_EQ(file.tensors().at("e").elements(), 0);
  EXPECT_FALSE(file.tensors().at("i").dtype.has_value());  // valid type, not computable: refused only if bound
  EXPECT_EQ(file.tensors().at("i").dtype_name, "I64");
}

TEST_F(SafetensorsTest, EmptyFile) { ExpectRefused("", "truncated"); }
TEST_F(SafetensorsTest, ShorterThanHeaderLength) { ExpectRefused("abc", "truncated"); }

TEST_F(SafetensorsTest, HeaderLengthLargerThanFile) {
  ExpectRefused(FileWithHeader("{}", "", 1000), "header length 1000 exceeds");
  ExpectRefused(FileWithHeader("{}", "", UINT64_MAX), "exceeds");
}

TEST_F(SafetensorsTest, MalformedJsonHeader) { ExpectRefused(FileWithHeader(R"({"a": {"dtype": )", ""), "malformed JSON"); }
TEST_F(SafetensorsTest, HeaderNotAnObject) { ExpectRefused(FileWithHeader("[1,2]", ""), "not a JSON object"); }

TEST_F(SafetensorsTest, UnknownDtype) {
  ExpectRefused(FileWithHeader(R"({"w":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}})", "xx"), "unknown dtype \"Q4_K\"");
}

TEST_F(SafetensorsTest, MissingKey) {
  ExpectRefused(FileWithHeader(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", std::string(8, 'x')), "missing \"dtype\"");
}

TEST_F(SafetensorsTest, OffsetsOutsideTheFile) {
  ExpectRefused(FileWithHeader(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, 'x')),
                "outside the 8-byte data section");
}

TEST_F(SafetensorsTest, TruncatedData) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}})";
  ExpectRefused(FileWithHeader(header, std::string(100, 'x')), "\"w\"");
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  ExpectRefused(FileWithHeader(header, std::string(12, 'x')), "overlapping");
}

TEST_F(SafetensorsTest, SizeDoesNotMatchShape) {
  ExpectRefused(FileWithHeader(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x')),
                "do not match");
}

TEST_F(SafetensorsTest, ReversedOffsets) {
  ExpectRefused(FileWithHeader(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, 'x')),
                "reversed");
}

TEST_F(SafetensorsTest, NegativeAndOverflowingShapes) {
  ExpectRefused(FileWithHeader(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", ""), "non-negative");
  ExpectRefused(
      FileWithHeader(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""), "overflows");
}

TEST_F(SafetensorsTest, TooManyDimensions) {
  ExpectRefused(FileWithHeader(R"({"a": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})", "xxxx"),
                "9 dimensions (at most 8)");
}

TEST_F(SafetensorsTest, DeepNestingIsRefusedWhileParsing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ExpectRefused(FileWithHeader(R"({"a": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 4]}})", "xxxx"),
                "nested deeper than 64 levels");
}

TEST_F(SafetensorsTest, ErrorsQuoteOnlyAnExcerptOfAValue) {
  const std::string huge(1 << 20, '7');
  const std::filesystem::path path =
      Write(FileWithHeader(R"({"a": {"dtype": "F32", "shape": [")" + huge + R"("], "data_offsets": [0, 4]}})", "xxxx"));
  try {
    SafetensorsFile file(path);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 400u);
    EXPECT_NE(std::string(e.what()).find("1048578 characters"), std::string::npos) << e.what();
  }
}

// Cut short at every byte, a real shard is refused: never read beyond its end.
TEST_F(SafetensorsTest, TruncatedAtEveryByteIsRefused) {
  const std::string valid = test::ReadText(test::DataDir() / "fixtures" / "sharded_mixed" / "model-00002-of-00003.safetensors");
  const std::filesystem::path path = Write(valid);
  SafetensorsFile whole(path);
  for (size_t length = valid.size(); length-- > 0;) {
    std::filesystem::resize_file(path, length);
    EXPECT_THROW(SafetensorsFile{path}, Error) << "accepted the first " << length << " of " << valid.size() << " bytes";
  }
}

TEST_F(SafetensorsTest, DuplicateTensorNames) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  ExpectRefused(FileWithHeader(header, std::string(8, 'x')), "duplicate key \"a\"");
}

class CheckpointTest : public ::testing::Test {
 protected:
  void WriteShard(const std::string& name, const std::string& tensor) {
    const std::string header = R"({")" + tensor + R"(":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    test::WriteText(dir_ / name, FileWithHeader(header, std::string(4, 'x')));
  }
  void ExpectRefused(const std::string& fragment) {
    try {
      Checkpoint::Open(dir_.path());
      ADD_FAILURE() << "accepted, expected: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }
  test::TempDir dir_;
};

TEST_F(CheckpointTest, ReadsShardsThroughTheIndex) {
  WriteShard("model-00001-of-00002.safetensors", "a");
  WriteShard("model-00002-of-00002.safetensors", "b");
  test::WriteText(dir_ / "model.safetensors.index.json",
                  R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  const Checkpoint checkpoint = Checkpoint::Open(dir_.path());
  EXPECT_EQ(checkpoint.files().size(), 2u);
  ASSERT_NE(checkpoint.Find("b"), nullptr);
  EXPECT_EQ(checkpoint.Find("b")->file.filename(), "model-00002-of-00002.safetensors");
  EXPECT_EQ(checkpoint.Find("c"), nullptr);
}

TEST_F(CheckpointTest, NoWeightFiles) { ExpectRefused("no model.safetensors"); }

TEST_F(CheckpointTest, MissingShard) {
  test::WriteText(dir_ / "model.safetensors.index.json", R"({"weight_map":{"a":"model-00001-of-00002.safetensors"}})");
  ExpectRefused("model-00001-of-00002.safetensors: cannot open");
}

TEST_F(CheckpointTest, TensorAbsentFromItsShard) {
  WriteShard("shard.safetensors", "a");
  test::WriteText(dir_ / "model.safetensors.index.json", R"({"weight_map":{"z":"shard.safetensors"}})");
  ExpectRefused("tensor \"z\" is listed in weight_map but absent from shard.safetensors");
}

TEST_F(CheckpointTest, ShardOutsideTheModelDirectory) {
  test::WriteText(dir_ / "model.safetensors.index.json", R"({"weight_map":{"a":"../elsewhere.safetensors"}})");
  ExpectRefused("not a file in the model directory");
}

TEST_F(CheckpointTest, MalformedIndex) {
  test::WriteText(dir_ / "model.safetensors.index.json", R"({"weight_map": [)");
  ExpectRefused("malformed JSON");
  test::WriteText(dir_ / "model.safetensors.index.json", R"({"metadata": {}})");
  ExpectRefused("weight_map");
}

}  // namespace
}  // namespace hymba
