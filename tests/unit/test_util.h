// Helpers shared by the tests: temporary directories, running the CLI, and
// writing safetensors files by hand (valid or deliberately broken).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "hymba/error.h"

namespace hymba::test {

std::filesystem::path DataDir();
std::filesystem::path FixtureDir(const std::string& name);
std::filesystem::path ShippedModelDir();  // models/hymba-kjv-tiny
std::vector<std::string> FixtureNames();

// A fresh directory removed when the object goes out of scope.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs the hymba binary with these arguments (shell-quoted here).
CommandResult RunCli(const std::vector<std::string>& args);

void WriteText(const std::filesystem::path& path, const std::string& text);
std::string ReadText(const std::filesystem::path& path);

// One tensor of a hand-built safetensors file.
struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
using RawTensors = std::map<std::string, RawTensor>;

RawTensors ReadSafetensors(const std::filesystem::path& path);
std::string SerializeSafetensors(const RawTensors& tensors);
// Copies a fixture's config.json and its tensors (all shards merged) into dir,
// after `edit` has changed the tensors and `edit_config` the config.
void WriteModel(const std::filesystem::path& dir, const nlohmann::json& config, const RawTensors& tensors);
nlohmann::json ReadJson(const std::filesystem::path& path);
RawTensors ReadFixtureTensors(const std::string& fixture);

// Expects `body` to throw hymba::Error whose message contains every fragment.
template <typename F>
void ExpectError(F body, const std::vector<std::string>& fragments) {
  try {
    body();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const std::string& fragment : fragments) EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace hymba::test
