// Precompiled for the three libraries (CMakeLists.txt): the standard and
// abseil headers most of their files parse. Listing a header here does not
// excuse a file from including what it uses.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
