#include "io/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <set>

#include "core/interleaved.h"
#include "hymba/error.h"

namespace hymba {
namespace {

constexpr uint32_t kVersion = 3;
constexpr int kMaxArrayDepth = 4;
constexpr size_t kMaxDims = 4;

size_t ScalarBytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8: case GgufValueType::kInt8: case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16: case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32: case GgufValueType::kInt32: case GgufValueType::kFloat32: return 4;
    case GgufValueType::kUint64: case GgufValueType::kInt64: case GgufValueType::kFloat64: return 8;
    case GgufValueType::kString: return 8;  // at least its length
    case GgufValueType::kArray: return 12;  // at least its element type and count
  }
  return 0;
}

bool KnownValueType(uint32_t type) { return type <= static_cast<uint32_t>(GgufValueType::kFloat64); }

// Bounds-checked little-endian reads over the mapped file; every failure
// names the file, the byte offset and what was being read.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::filesystem::path& path) : bytes_(bytes), path_(path) {}

  [[noreturn]] void Fail(const std::string& what) const {
    throw Error(path_.string() + ": invalid GGUF at byte " + std::to_string(offset_) + ": " + what);
  }
  size_t offset() const { return offset_; }
  size_t remaining() const { return bytes_.size() - offset_; }

  template <typename T>
  T Read(const char* what) {
    if (remaining() < sizeof(T)) Fail(std::string("file ends inside ") + what);
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  std::string ReadString(const std::string& what) {
    const auto length = Read<uint64_t>(what.c_str());
    if (length > remaining()) Fail(what + " has length " + std::to_string(length) + ", beyond the end of the file");
    std::string text(reinterpret_cast<const char*>(bytes_.data() + offset_), length);
    offset_ += length;
    return text;
  }

  nlohmann::json ReadScalar(GgufValueType type, const std::string& what) {
    switch (type) {
      case GgufValueType::kUint8: return Read<uint8_t>(what.c_str());
      case GgufValueType::kInt8: return Read<int8_t>(what.c_str());
      case GgufValueType::kUint16: return Read<uint16_t>(what.c_str());
      case GgufValueType::kInt16: return Read<int16_t>(what.c_str());
      case GgufValueType::kUint32: return Read<uint32_t>(what.c_str());
      case GgufValueType::kInt32: return Read<int32_t>(what.c_str());
      case GgufValueType::kFloat32: return Read<float>(what.c_str());
      case GgufValueType::kUint64: return Read<uint64_t>(what.c_str());
      case GgufValueType::kInt64: return Read<int64_t>(what.c_str());
      case GgufValueType::kFloat64: return Read<double>(what.c_str());
      case GgufValueType::kBool: {
        const auto flag = Read<uint8_t>(what.c_str());
        if (flag > 1) Fail(what + " is a bool holding " + std::to_string(flag));
        return flag == 1;
      }
      case GgufValueType::kString: return ReadString(what);
      case GgufValueType::kArray: break;
    }
    Fail(what + " has an unexpected type");
  }

  GgufValue ReadValue(GgufValueType type, const std::string& what, int depth) {
    GgufValue value;
    value.type = type;
    if (type != GgufValueType::kArray) {
      value.value = ReadScalar(type, what);
      return value;
    }
    if (depth >= kMaxArrayDepth) Fail(what + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
    const auto element = Read<uint32_t>(what.c_str());
    if (!KnownValueType(element)) Fail(what + ": unknown array element type " + std::to_string(element));
    value.element_type = static_cast<GgufValueType>(element);
    const auto count = Read<uint64_t>(what.c_str());
    // Each element takes at least ScalarBytes: an absurd count cannot fit.
    if (count > remaining() / ScalarBytes(value.element_type)) {
      Fail(what + ": array of " + std::to_string(count) + " elements does not fit in the file");
    }
    if (value.element_type == GgufValueType::kUint8) {
      value.bytes.assign(reinterpret_cast<const char*>(bytes_.data() + offset_), count);
      offset_ += count;
      return value;
    }
    value.value = nlohmann::json::array();
    for (uint64_t i = 0; i < count; ++i) {
      GgufValue item = ReadValue(value.element_type, what, depth + 1);
      value.value.push_back(item.type == GgufValueType::kArray && item.element_type == GgufValueType::kUint8
                                ? nlohmann::json(item.bytes)
                                : std::move(item.value));
    }
    return value;
  }

 private:
  std::span<const std::byte> bytes_;
  const std::filesystem::path& path_;
  size_t offset_ = 0;
};

uint64_t CheckedProduct(const std::vector<int64_t>& dims, const std::function<void(const std::string&)>& fail) {
  uint64_t product = 1;
  for (int64_t dim : dims) {
    if (dim <= 0) fail("dimension " + std::to_string(dim) + " is not positive");
    if (product > (uint64_t{1} << 48) / static_cast<uint64_t>(dim)) fail("more than 2^48 elements");
    product *= static_cast<uint64_t>(dim);
  }
  return product;
}

template <typename T>
void Append(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

void AppendString(std::string& out, const std::string& text) {
  Append<uint64_t>(out, text.size());
  out += text;
}

void AppendScalar(std::string& out, GgufValueType type, const nlohmann::json& value) {
  switch (type) {
    case GgufValueType::kUint8: return Append(out, value.get<uint8_t>());
    case GgufValueType::kInt8: return Append(out, value.get<int8_t>());
    case GgufValueType::kUint16: return Append(out, value.get<uint16_t>());
    case GgufValueType::kInt16: return Append(out, value.get<int16_t>());
    case GgufValueType::kUint32: return Append(out, value.get<uint32_t>());
    case GgufValueType::kInt32: return Append(out, value.get<int32_t>());
    case GgufValueType::kFloat32: return Append(out, value.get<float>());
    case GgufValueType::kUint64: return Append(out, value.get<uint64_t>());
    case GgufValueType::kInt64: return Append(out, value.get<int64_t>());
    case GgufValueType::kFloat64: return Append(out, value.get<double>());
    case GgufValueType::kBool: return Append<uint8_t>(out, value.get<bool>() ? 1 : 0);
    case GgufValueType::kString: return AppendString(out, value.get<std::string>());
    case GgufValueType::kArray: break;
  }
  throw Error("GGUF writer: nested arrays are not written");
}

size_t TensorBytes(GgmlType type, const std::vector<int64_t>& dims) {
  size_t rows = 1;
  for (size_t i = 1; i < dims.size(); ++i) rows *= static_cast<size_t>(dims[i]);
  return rows * RowBytes(*DTypeFromGgml(static_cast<uint32_t>(type)), static_cast<size_t>(dims[0]));
}

size_t Padding(size_t offset) { return (kGgufAlignment - offset % kGgufAlignment) % kGgufAlignment; }

}  // namespace

GgufValue GgufValue::String(std::string text) { return {GgufValueType::kString, {}, std::move(text), {}}; }
GgufValue GgufValue::Uint32(uint32_t number) { return {GgufValueType::kUint32, {}, number, {}}; }
GgufValue GgufValue::Float64(double number) { return {GgufValueType::kFloat64, {}, number, {}}; }
GgufValue GgufValue::Bool(bool flag) { return {GgufValueType::kBool, {}, flag, {}}; }
GgufValue GgufValue::Bytes(std::string data) {
  return {GgufValueType::kArray, GgufValueType::kUint8, {}, std::move(data)};
}

std::optional<DType> DTypeFromGgml(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0: return DType::kF32;
    case 1: return DType::kF16;
    case 2: return DType::kQ4_0;
    case 8: return DType::kQ8_0;
    case 30: return DType::kBF16;
    default: return std::nullopt;
  }
}

GgmlType GgmlFromDType(DType type) {
  switch (type) {
    case DType::kF32: return GgmlType::kF32;
    case DType::kF16: return GgmlType::kF16;
    case DType::kBF16: return GgmlType::kBF16;
    case DType::kQ8_0: return GgmlType::kQ8_0;
    case DType::kQ4_0: return GgmlType::kQ4_0;
  }
  return GgmlType::kF32;
}

bool GgufFile::HasMagic(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

GgufFile::GgufFile(const std::filesystem::path& path, FileAccess access) : file_(path, access) {
  Cursor in(file_.bytes(), file_.path());
  if (file_.bytes().size() < 4 || std::memcmp(file_.bytes().data(), "GGUF", 4) != 0) {
    in.Fail("the file does not start with the magic \"GGUF\"");
  }
  in.Read<uint32_t>("magic");
  const auto version = in.Read<uint32_t>("version");
  if (version != kVersion) {
    in.Fail("version " + std::to_string(version) + " is not supported (this engine reads GGUF version 3)");
  }
  const auto tensor_count = in.Read<uint64_t>("tensor count");
  const auto metadata_count = in.Read<uint64_t>("metadata count");
  // A metadata entry takes at least 12 bytes, a tensor entry at least 24.
  if (metadata_count > in.remaining() / 12) in.Fail("metadata count " + std::to_string(metadata_count) + " cannot fit in the file");
  for (uint64_t i = 0; i < metadata_count; ++i) {
    const std::string key = in.ReadString("metadata key " + std::to_string(i));
    if (key.empty()) in.Fail("metadata key " + std::to_string(i) + " is empty");
    const auto type = in.Read<uint32_t>(("type of \"" + key + "\"").c_str());
    if (!KnownValueType(type)) in.Fail("metadata \"" + key + "\" has unknown type " + std::to_string(type));
    GgufValue value = in.ReadValue(static_cast<GgufValueType>(type), "metadata \"" + key + "\"", 0);
    if (!metadata_.emplace(key, std::move(value)).second) in.Fail("metadata key \"" + key + "\" appears twice");
  }
  size_t alignment = kGgufAlignment;
  if (auto it = metadata_.find("general.alignment"); it != metadata_.end()) {
    if (it->second.type != GgufValueType::kUint32 || it->second.value.get<uint32_t>() == 0 ||
        !std::has_single_bit(it->second.value.get<uint32_t>())) {
      in.Fail("general.alignment must be a power of two stored as uint32");
    }
    alignment = it->second.value.get<uint32_t>();
  }
  if (tensor_count > in.remaining() / 24) in.Fail("tensor count " + std::to_string(tensor_count) + " cannot fit in the file");
  struct Info {
    GgufTensor tensor;
    uint64_t offset, bytes;
  };
  std::vector<Info> infos;
  std::set<std::string> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    Info info;
    info.tensor.name = in.ReadString("tensor name " + std::to_string(i));
    const std::string& name = info.tensor.name;
    auto fail = [&](const std::string& what) { in.Fail("tensor \"" + name + "\": " + what); };
    if (name.empty()) in.Fail("tensor " + std::to_string(i) + " has an empty name");
    if (!names.insert(name).second) fail("the name appears twice");
    const auto dims = in.Read<uint32_t>("tensor dimension count");
    if (dims == 0 || dims > kMaxDims) fail(std::to_string(dims) + " dimensions (1 to 4 are valid)");
    for (uint32_t d = 0; d < dims; ++d) {
      const auto dim = in.Read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > (uint64_t{1} << 40)) fail("dimension " + std::to_string(dim) + " is out of range");
      info.tensor.dims.push_back(static_cast<int64_t>(dim));
    }
    info.tensor.ggml_type = in.Read<uint32_t>("tensor type");
    const std::optional<DType> type = DTypeFromGgml(info.tensor.ggml_type);
    if (!type) fail("tensor type " + std::to_string(info.tensor.ggml_type) + " is not supported (F32, F16, BF16, Q8_0, Q4_0 are)");
    const uint64_t elements = CheckedProduct(info.tensor.dims, fail);
    if (IsQuantized(*type) && info.tensor.dims[0] % static_cast<int64_t>(kQuantBlock) != 0) {
      fail("rows of " + std::to_string(info.tensor.dims[0]) + " are not whole blocks of " + std::to_string(kQuantBlock));
    }
    info.bytes = elements / static_cast<uint64_t>(info.tensor.dims[0]) * RowBytes(*type, static_cast<size_t>(info.tensor.dims[0]));
    info.offset = in.Read<uint64_t>("tensor offset");
    if (info.offset % alignment != 0) fail("offset " + std::to_string(info.offset) + " is not aligned");
    infos.push_back(std::move(info));
  }
  const size_t data_start = in.offset() + (alignment - in.offset() % alignment) % alignment;
  const size_t file_size = file_.bytes().size();
  if (data_start > file_size && !infos.empty()) in.Fail("the tensor data section starts beyond the end of the file");
  auto describe = [](const Info& info) {
    return "tensor \"" + info.tensor.name + "\" (" + std::to_string(info.bytes) + " bytes at data offset " +
           std::to_string(info.offset) + ")";
  };
  for (const Info& info : infos) {
    if (info.offset > file_size - std::min(file_size, data_start) || info.bytes > file_size - data_start - info.offset) {
      throw Error(file_.path().string() + ": invalid GGUF: " + describe(info) + " extends beyond the end of the file (truncated?)");
    }
  }
  // Tensors that share bytes would be rewritten twice by the in-place
  // interleaving of quantized matrices, and are never written by a sane tool.
  std::vector<const Info*> by_offset;
  for (const Info& info : infos) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(), [](const Info* a, const Info* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->bytes) {
      throw Error(file_.path().string() + ": invalid GGUF: " + describe(*by_offset[i]) + " overlaps " +
                  describe(*by_offset[i - 1]));
    }
  }
  for (Info& info : infos) {
    info.tensor.data = file_.bytes().subspan(data_start + info.offset, info.bytes);
    tensors_.push_back(std::move(info.tensor));
  }
}

const GgufValue& GgufFile::Get(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) throw Error(file_.path().string() + ": GGUF metadata has no \"" + key + "\"");
  return it->second;
}

std::string GgufFile::GetString(const std::string& key) const {
  const GgufValue& value = Get(key);
  if (value.type != GgufValueType::kString) throw Error(file_.path().string() + ": GGUF metadata \"" + key + "\" is not a string");
  return value.value.get<std::string>();
}

void GgufWriter::Set(const std::string& key, GgufValue value) {
  for (auto& [existing, old] : metadata_) {
    if (existing == key) {
      old = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> dims,
                           std::function<void(std::span<std::byte>)> fill) {
  const size_t bytes = TensorBytes(type, dims);
  tensors_.push_back({name, type, std::move(dims), bytes, std::move(fill)});
}

void GgufWriter::Write(const std::filesystem::path& path, const std::function<void(size_t, size_t)>& progress) const {
  std::string header;
  header.append("GGUF");
  Append<uint32_t>(header, kVersion);
  Append<uint64_t>(header, tensors_.size());
  Append<uint64_t>(header, metadata_.size() + 1);  // + general.alignment
  auto append_value = [&](const GgufValue& value) {
    Append<uint32_t>(header, static_cast<uint32_t>(value.type));
    if (value.type != GgufValueType::kArray) return AppendScalar(header, value.type, value.value);
    Append<uint32_t>(header, static_cast<uint32_t>(value.element_type));
    if (value.element_type == GgufValueType::kUint8) {
      Append<uint64_t>(header, value.bytes.size());
      header += value.bytes;
      return;
    }
    Append<uint64_t>(header, value.value.size());
    for (const auto& item : value.value) AppendScalar(header, value.element_type, item);
  };
  AppendString(header, "general.alignment");
  append_value(GgufValue::Uint32(kGgufAlignment));
  for (const auto& [key, value] : metadata_) {
    AppendString(header, key);
    append_value(value);
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    AppendString(header, t.name);
    Append<uint32_t>(header, static_cast<uint32_t>(t.dims.size()));
    for (int64_t dim : t.dims) Append<uint64_t>(header, static_cast<uint64_t>(dim));
    Append<uint32_t>(header, static_cast<uint32_t>(t.type));
    Append<uint64_t>(header, offset);
    offset += t.bytes + Padding(t.bytes);
  }
  header.append(Padding(header.size()), '\0');

  std::filesystem::path temporary = path;
  temporary += ".partial";
  try {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(temporary.string() + ": cannot create the output file");
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    std::vector<std::byte> buffer;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const PendingTensor& t = tensors_[i];
      buffer.assign(t.bytes + Padding(t.bytes), std::byte{0});
      t.fill(std::span(buffer).first(t.bytes));
      out.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
      if (!out) break;
      if (progress) progress(i + 1, tensors_.size());
    }
    out.flush();
    if (!out) {
      throw Error(path.string() + ": writing failed (disk full?)");
    }
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw;
  }
  std::filesystem::rename(temporary, path);
}

void GgufFile::InterleaveMatrices(bool bf16_products) {
  file_.Rewrite([&](std::span<std::byte> bytes) {
    for (GgufTensor& tensor : tensors_) {
      const std::optional<DType> type = DTypeFromGgml(tensor.ggml_type);
      if (tensor.layout != Layout::kRowMajor || !type || tensor.dims.size() != 2) continue;
      const auto offset = static_cast<size_t>(tensor.data.data() - file_.bytes().data());
      const Layout layout = LoadedLayout(*type, bf16_products);
      InterleaveRows(*type, layout, static_cast<size_t>(tensor.dims[1]), static_cast<size_t>(tensor.dims[0]),
                     bytes.subspan(offset, tensor.data.size()));
      tensor.layout = layout;
    }
  });
}

}  // namespace hymba
