// The hymba command line on arbitrary arguments (input: arguments separated
// by NUL bytes): parsing, and every check of the parsed flags that reads no
// file. Running the commands is left out: they would read and write whatever
// paths the input names.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cli.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kMaxArguments = 64;
  std::vector<std::string> arguments = {"hymba"};
  for (std::string_view part : hymba::fuzz::SplitAtNul(hymba::fuzz::AsText(data, size), kMaxArguments)) {
    arguments.emplace_back(part);
  }
  std::vector<char*> argv;
  for (std::string& argument : arguments) argv.push_back(argument.data());
  hymba::cli::Cli cli;
  try {
    cli.app().parse(static_cast<int>(argv.size()), argv.data());
    cli.CheckFlags();
  } catch (const CLI::ParseError&) {
  } catch (const hymba::Error&) {
  }
  return 0;
}
