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

namespace {

uint32_t Load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

void Store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// Calls f(kind, body) for each well-formed option up to the first
// malformed one or the end-of-options; f returns false to stop.
template <typename F>
void ForEachOption(std::span<const uint8_t> opts, F f) {
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
    if (!f(kind, opts.subspan(i + 2, len - 2))) break;
    i += len;
  }
}

}  // namespace

SynOptions ParseSynOptions(std::span<const uint8_t> opts) {
  SynOptions r;
  ForEachOption(opts, [&r](uint8_t kind, std::span<const uint8_t> body) {
    if (kind == 2 && body.size() == 2) {
      r.mss = static_cast<uint16_t>((body[0] << 8) | body[1]);
    } else if (kind == 3 && body.size() == 1) {
      r.wscale = static_cast<int8_t>(body[0] > 14 ? 14 : body[0]);
    } else if (kind == 8 && body.size() == 8) {
      r.ts = true;
      r.tsval = Load32(body.data());
    }
    return true;
  });
  return r;
}

void WriteTimestamp(uint8_t* out, uint32_t tsval, uint32_t tsecr) {
  out[0] = 1;
  out[1] = 1;
  out[2] = 8;
  out[3] = 10;
  Store32(out + 4, tsval);
  Store32(out + 8, tsecr);
}

bool ParseTimestamp(std::span<const uint8_t> opts, uint32_t* tsval) {
  // The layout every stack we know of uses, first.
  if (opts.size() >= kTsOptLen && opts[0] == 1 && opts[1] == 1 && opts[2] == 8 && opts[3] == 10) {
    *tsval = Load32(opts.data() + 4);
    return true;
  }
  bool found = false;
  ForEachOption(opts, [&](uint8_t kind, std::span<const uint8_t> body) {
    if (kind != 8 || body.size() != 8) return true;
    *tsval = Load32(body.data());
    found = true;
    return false;
  });
  return found;
}

size_t WriteSynOptions(uint8_t* out, uint16_t mss, int8_t wscale, const uint32_t* ts) {
  out[0] = 2;
  out[1] = 4;
  out[2] = static_cast<uint8_t>(mss >> 8);
  out[3] = static_cast<uint8_t>(mss);
  size_t n = 4;
  if (wscale >= 0) {
    out[4] = 1;
    out[5] = 3;
    out[6] = 3;
    out[7] = static_cast<uint8_t>(wscale);
    n = 8;
  }
  if (ts) {
    WriteTimestamp(out + n, ts[0], ts[1]);
    n += kTsOptLen;
  }
  return n;
}

}  // namespace ringfwd
