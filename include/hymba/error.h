// Every failure the library reports on bad input (files, configs, tokens) is a
// hymba::Error whose message names the offending file, field or value.
#pragma once

#include <stdexcept>
#include <string>

namespace hymba {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace hymba
