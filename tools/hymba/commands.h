// Subcommands of the hymba CLI. Each throws hymba::Error on bad input; main()
// turns that into a message and a non-zero exit.
#pragma once

#include <filesystem>

namespace hymba::cli {

void RunInfo(const std::filesystem::path& model_dir, bool json);

}  // namespace hymba::cli
