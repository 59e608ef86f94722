// Tagged user_data for io_uring submissions.
//
// Every submission carries 64 bits that say what completed, without a
// pointer the kernel could outlive: the kind of operation (8 bits), the
// generation of the slot it belongs to (24 bits) and the slot index (32
// bits). A completion whose generation no longer matches its slot is stale
// (the slot was freed and reused while the kernel still held the request)
// and is dropped by its handler.
#pragma once

#include <cstdint>

namespace ringfwd {

struct UserData {
  uint8_t kind = 0;
  uint32_t gen = 0;  // 24 bits used
  uint32_t index = 0;

  static constexpr uint32_t kGenMask = 0xffffff;

  constexpr uint64_t Pack() const {
    return (uint64_t{kind} << 56) | (uint64_t{gen & kGenMask} << 32) | index;
  }
  static constexpr UserData Unpack(uint64_t v) {
    return UserData{static_cast<uint8_t>(v >> 56), static_cast<uint32_t>((v >> 32) & kGenMask),
                    static_cast<uint32_t>(v)};
  }
};

// Kind 0 is reserved for submissions whose completion is ignored (cancels).
inline constexpr uint8_t kKindIgnore = 0;

}  // namespace ringfwd
