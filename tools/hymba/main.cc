// hymba: command-line client of libhymba.
#include <iostream>

#include "cli.h"

int main(int argc, char** argv) {
  hymba::cli::Cli cli;
  try {
    cli.app().parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.app().exit(e);
  }
  try {
    cli.Run();
  } catch (const std::exception& e) {
    std::cerr << "hymba: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
