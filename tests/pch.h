// Precompiled for every test binary (CMakeLists.txt): the headers nearly all
// test files parse. GoogleTest and gmock alone are about two seconds of each
// test file's compile; parsed once, the test build takes about half as long.
// Listing a header here does not excuse a test file from including what it
// uses.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
