// The pure arithmetic of the tap link's TCP translator: sequence number
// comparisons (modulo 2^32), initial sequence numbers per RFC 6528, the MSS
// a link's MTU allows, the options of a SYN, and how many segments a stream
// of bytes becomes. Nothing here touches a socket or a clock of its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "fwd/addr.h"

namespace ringfwd {

// Sequence space comparisons (RFC 793 / RFC 1982 serial arithmetic).
inline bool SeqLt(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) < 0; }
inline bool SeqLe(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) <= 0; }
inline bool SeqGt(uint32_t a, uint32_t b) { return SeqLt(b, a); }
inline bool SeqGe(uint32_t a, uint32_t b) { return SeqLe(b, a); }

// RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, key), with
// M a timer ticking every 4 microseconds and F SipHash-2-4 keyed with a
// 128-bit secret chosen at start.
class IsnGenerator {
 public:
  // A random key (getrandom).
  IsnGenerator();
  // A fixed key, for tests.
  IsnGenerator(uint64_t k0, uint64_t k1) : k0_(k0), k1_(k1) {}
  // The ISN of the connection between (local, lport) and (remote, rport) at
  // monotonic time `now_ns`.
  uint32_t Isn(const Addr6& local, uint16_t lport, const Addr6& remote, uint16_t rport,
               int64_t now_ns) const;

 private:
  uint64_t k0_, k1_;
};

// SipHash-2-4 of `data` with key (k0, k1).
uint64_t SipHash24(uint64_t k0, uint64_t k1, std::span<const uint8_t> data);

// The MSS an MTU allows for a family (IPv4: MTU - 40, IPv6: MTU - 60),
// never above 65535 - headers.
uint16_t MssForMtu(uint32_t mtu, bool v4);

// The options of a SYN or SYN-ACK that matter to us. Missing options keep
// their defaults: MSS 536 (RFC 9293; callers use 1220 for IPv6), no window
// scaling. A malformed option area ends the parse with what was read.
struct SynOptions {
  uint16_t mss = 0;    // 0: none given
  int8_t wscale = -1;  // -1: none given; clamped to 14 (RFC 7323)
  bool ts = false;     // timestamps offered (RFC 7323), with this TSval
  uint32_t tsval = 0;
};
SynOptions ParseSynOptions(std::span<const uint8_t> opts);

// The timestamp option (RFC 7323) as we write it on every segment once both
// sides agreed: NOP, NOP, kind 8, length 10, TSval, TSecr.
inline constexpr size_t kTsOptLen = 12;
void WriteTimestamp(uint8_t* out, uint32_t tsval, uint32_t tsecr);
// The TSval of a segment's options; false if it has none (or they are
// malformed).
bool ParseTimestamp(std::span<const uint8_t> opts, uint32_t* tsval);

// Writes the options of our SYN or SYN-ACK: MSS, then NOP and window scale
// `wscale` if `wscale` >= 0, then the timestamp option if `ts` is not null
// (ts[0] TSval, ts[1] TSecr). Returns the length written (4, 8, 16 or 20).
size_t WriteSynOptions(uint8_t* out, uint16_t mss, int8_t wscale, const uint32_t* ts = nullptr);

// The number of MSS-sized segments `len` bytes become (0 for 0 bytes).
inline size_t SegmentCount(size_t len, size_t mss) { return mss ? (len + mss - 1) / mss : 0; }

// The window field for a window of `bytes` at scale `shift`: rounded down,
// capped at 65535 << shift.
inline uint16_t ScaledWindow(uint64_t bytes, uint8_t shift) {
  uint64_t w = bytes >> shift;
  return static_cast<uint16_t>(w > 65535 ? 65535 : w);
}

}  // namespace ringfwd
