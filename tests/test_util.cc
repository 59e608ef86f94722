#include "tests/test_util.h"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "gtest/gtest.h"

namespace ringfwd::testing {

std::string SourceDir() { return RINGFWD_SOURCE_DIR; }

std::string BinDir() {
  if (const char* env = std::getenv("RINGFWD_BIN_DIR")) return env;
  return RINGFWD_BIN_DIR;
}

std::string InteropDir() {
  if (const char* env = std::getenv("RINGFWD_INTEROP_DIR")) return env;
  return SourceDir() + "/../shared/interop";
}

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string ReadFileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace ringfwd::testing
