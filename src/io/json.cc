#include "io/json.h"

#include <set>
#include <vector>

#include "hymba/error.h"

namespace hymba {

template <typename Json>
Json ParseJson(std::string_view text, const std::string& where, DuplicateKeys duplicates) {
  using json = Json;  // parse_event_t and parse() of the chosen type
  // nlohmann keeps the last of duplicate keys; where two entries of one name
  // would be ambiguous (tensors of a checkpoint), they are found while parsing.
  std::vector<std::set<std::string>> keys_per_depth;
  auto callback = [&](int depth, typename json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      throw Error(where + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    if (duplicates == DuplicateKeys::kLastWins) return true;
    const auto level = static_cast<size_t>(depth);
    if (event == json::parse_event_t::object_start) {
      if (keys_per_depth.size() <= level + 1) keys_per_depth.resize(level + 2);
      keys_per_depth[level + 1].clear();
    } else if (event == json::parse_event_t::key) {
      if (keys_per_depth.size() <= level) keys_per_depth.resize(level + 1);
      const std::string& key = parsed.template get_ref<const std::string&>();
      if (!keys_per_depth[level].insert(key).second) {
        throw Error(where + ": duplicate key \"" + key + "\"");
      }
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed JSON: " + e.what());
  }
}

template nlohmann::json ParseJson(std::string_view, const std::string&, DuplicateKeys);
template nlohmann::ordered_json ParseJson(std::string_view, const std::string&, DuplicateKeys);

std::string JsonExcerpt(const nlohmann::json& value) {
  constexpr size_t kLength = 80;
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > kLength) text = text.substr(0, kLength) + "... (" + std::to_string(text.size()) + " characters)";
  return text;
}

}  // namespace hymba
