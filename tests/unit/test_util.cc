#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace hymba::test {

std::filesystem::path DataDir() { return HYMBA_TEST_DATA; }
std::filesystem::path FixtureDir(const std::string& name) { return DataDir() / "fixtures" / name; }
std::filesystem::path ShippedModelDir() { return DataDir() / ".." / ".." / "models" / "hymba-kjv-tiny"; }

std::vector<std::string> FixtureNames() {
  std::vector<std::string> names;
  std::error_code missing;
  for (const auto& entry : std::filesystem::directory_iterator(DataDir() / "fixtures", missing)) {
    if (entry.is_directory()) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "hymba_test_XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

namespace {

std::string ShellQuote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace

CommandResult RunCli(const std::vector<std::string>& args) {
  TempDir dir;
  std::string command = ShellQuote(HYMBA_CLI_PATH);
  for (const std::string& arg : args) command += " " + ShellQuote(arg);
  command += " >" + ShellQuote((dir / "out").string()) + " 2>" + ShellQuote((dir / "err").string()) + " </dev/null";
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = ReadText(dir / "out");
  result.err = ReadText(dir / "err");
  return result;
}

void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

nlohmann::json ReadJson(const std::filesystem::path& path) { return nlohmann::json::parse(ReadText(path)); }

RawTensors ReadSafetensors(const std::filesystem::path& path) {
  const std::string file = ReadText(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(file[static_cast<size_t>(i)]);
  const nlohmann::json header = nlohmann::json::parse(file.substr(8, header_len));
  RawTensors tensors;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    const auto begin = entry["data_offsets"][0].get<size_t>(), end = entry["data_offsets"][1].get<size_t>();
    tensors[name] = {entry["dtype"], entry["shape"].get<std::vector<int64_t>>(),
                     file.substr(8 + header_len + begin, end - begin)};
  }
  return tensors;
}

std::string SerializeSafetensors(const RawTensors& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, tensor] : tensors) {
    header[name] = {{"dtype", tensor.dtype}, {"shape", tensor.shape}, {"data_offsets", {data.size(), data.size() + tensor.bytes.size()}}};
    data += tensor.bytes;
  }
  const std::string text = header.dump();
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return file + text + data;
}

void WriteModel(const std::filesystem::path& dir, const nlohmann::json& config, const RawTensors& tensors) {
  std::filesystem::create_directories(dir);
  WriteText(dir / "config.json", config.dump(2));
  WriteText(dir / "model.safetensors", SerializeSafetensors(tensors));
}

RawTensors ReadFixtureTensors(const std::string& fixture) {
  RawTensors merged;
  for (const auto& entry : std::filesystem::directory_iterator(FixtureDir(fixture))) {
    if (entry.path().extension() == ".safetensors") merged.merge(ReadSafetensors(entry.path()));
  }
  return merged;
}

}  // namespace hymba::test
