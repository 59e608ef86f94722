// Shared helpers for tests: where the sources and binaries are, reading files.
#pragma once

#include <string>
#include <vector>

namespace ringfwd::testing {

// The source tree root (for ../shared/interop and tests data).
std::string SourceDir();
// The directory holding ringfwd, pesto and the other built binaries.
std::string BinDir();
// The interop directory of captured bytes (../shared/interop next to the
// source tree, or $RINGFWD_INTEROP_DIR).
std::string InteropDir();
// Whole file as bytes; empty vector and a test failure if it cannot be read.
std::vector<uint8_t> ReadFileBytes(const std::string& path);
std::string ReadFileText(const std::string& path);

}  // namespace ringfwd::testing
