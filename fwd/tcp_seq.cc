#include "fwd/tcp_seq.h"

#include <sys/random.h>

#include <cstring>
#include <ctime>

namespace ringfwd {
namespace {

inline uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

inline void SipRound(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
  v0 += v1;
  v1 = Rotl(v1, 13);
  v1 ^= v0;
  v0 = Rotl(v0, 32);
  v2 += v3;
  v3 = Rotl(v3, 16);
  v3 ^= v2;
  v0 += v3;
  v3 = Rotl(v3, 21);
  v3 ^= v0;
  v2 += v1;
  v1 = Rotl(v1, 17);
  v1 ^= v2;
  v2 = Rotl(v2, 32);
}

inline uint64_t Load64Le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

}  // namespace

uint64_t SipHash24(uint64_t k0, uint64_t k1, std::span<const uint8_t> data) {
  uint64_t v0 = 0x736f6d6570736575ull ^ k0;
  uint64_t v1 = 0x646f72616e646f6dull ^ k1;
  uint64_t v2 = 0x6c7967656e657261ull ^ k0;
  uint64_t v3 = 0x7465646279746573ull ^ k1;
  size_t n = data.size();
  size_t full = n & ~size_t{7};
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = Load64Le(data.data() + i);
    v3 ^= m;
    SipRound(v0, v1, v2, v3);
    SipRound(v0, v1, v2, v3);
    v0 ^= m;
  }
  uint64_t b = uint64_t{n} << 56;
  for (size_t i = full; i < n; i++) b |= uint64_t{data[i]} << (8 * (i - full));
  v3 ^= b;
  SipRound(v0, v1, v2, v3);
  SipRound(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  for (int i = 0; i < 4; i++) SipRound(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

IsnGenerator::IsnGenerator() {
  uint64_t k[2] = {0, 0};
  if (getrandom(k, sizeof(k), 0) != sizeof(k)) {
    // No entropy source: the clock is better than a constant.
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    k[0] = static_cast<uint64_t>(ts.tv_nsec) * 0x9e3779b97f4a7c15ull;
    k[1] = static_cast<uint64_t>(ts.tv_sec) ^ reinterpret_cast<uintptr_t>(this);
  }
  k0_ = k[0];
  k1_ = k[1];
}

uint32_t IsnGenerator::Isn(const Addr6& local, uint16_t lport, const Addr6& remote, uint16_t rport,
                           int64_t now_ns) const {
  uint8_t buf[36];
  std::memcpy(buf, local.b.data(), 16);
  std::memcpy(buf + 16, remote.b.data(), 16);
  buf[32] = static_cast<uint8_t>(lport >> 8);
  buf[33] = static_cast<uint8_t>(lport);
  buf[34] = static_cast<uint8_t>(rport >> 8);
  buf[35] = static_cast<uint8_t>(rport);
  uint32_t f = static_cast<uint32_t>(SipHash24(k0_, k1_, buf));
  uint32_t m = static_cast<uint32_t>(static_cast<uint64_t>(now_ns) / 4000);
  return m + f;
}

uint16_t MssForMtu(uint32_t mtu, bool v4) {
  uint32_t hdr = v4 ? 40 : 60;
  if (mtu > 65535) mtu = 65535;
  if (mtu <= hdr + 8) return 8;
  return static_cast<uint16_t>(mtu - hdr);
}

SynOptions ParseSynOptions(std::span<const uint8_t> opts) {
  SynOptions r;
  size_t i = 0;
  while (i < opts.size()) {
    uint8_t kind = opts[i];
    if (kind == 0) break;  // end of options
    if (kind == 1) {       // NOP
      i++;
      continue;
    }
    if (i + 1 >= opts.size()) break;
    uint8_t len = opts[i + 1];
    if (len < 2 || i + len > opts.size()) break;
    if (kind == 2 && len == 4) {
      r.mss = static_cast<uint16_t>((opts[i + 2] << 8) | opts[i + 3]);
    } else if (kind == 3 && len == 3) {
      r.wscale = static_cast<int8_t>(opts[i + 2] > 14 ? 14 : opts[i + 2]);
    }
    i += len;
  }
  return r;
}

size_t WriteSynOptions(uint8_t* out, uint16_t mss, int8_t wscale) {
  out[0] = 2;
  out[1] = 4;
  out[2] = static_cast<uint8_t>(mss >> 8);
  out[3] = static_cast<uint8_t>(mss);
  if (wscale < 0) return 4;
  out[4] = 1;
  out[5] = 3;
  out[6] = 3;
  out[7] = static_cast<uint8_t>(wscale);
  return 8;
}

}  // namespace ringfwd
