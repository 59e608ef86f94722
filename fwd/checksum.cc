#include "fwd/checksum.h"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ringfwd {
namespace {

// Adds bytes as big-endian 16-bit words without folding: 32-bit loads
// accumulated in 64 bits cannot overflow for any span under 2^32 words.
uint64_t Sum64(const uint8_t* p, size_t n, uint64_t acc) {
  while (n >= 32) {
    uint32_t w[8];
    std::memcpy(w, p, 32);
    acc += uint64_t{w[0]} + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
    p += 32;
    n -= 32;
  }
  while (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
    p += 4;
    n -= 4;
  }
  // The remaining bytes go in at the offset they have in native order, so
  // that the whole sum stays in native (little-endian on x86) byte order.
  uint8_t tail[4] = {0, 0, 0, 0};
  std::memcpy(tail, p, n);
  if (n) {
    uint32_t w;
    std::memcpy(&w, tail, 4);
    acc += w;
  }
  return acc;
}

// Folds a 64-bit native-order sum to a 16-bit native-order sum.
uint32_t Fold(uint64_t acc) {
  acc = (acc & 0xffffffff) + (acc >> 32);
  acc = (acc & 0xffffffff) + (acc >> 32);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint32_t>(acc);
}

// The 16-bit sum in native order, converted to big-endian value.
uint32_t NativeToHost16(uint32_t s) {
  uint16_t v = static_cast<uint16_t>(s);
  uint8_t b[2];
  std::memcpy(b, &v, 2);
  return (uint32_t{b[0]} << 8) | b[1];
}

#if defined(__x86_64__)
// Sum64 with AVX2: each 32-byte load's eight 32-bit words are widened to
// 64-bit lanes (interleaved with zeros) and added, so the lanes hold the
// same native-order sum of 32-bit words that Sum64 computes; the tail goes
// to Sum64.
__attribute__((target("avx2"))) uint64_t Sum64Avx2(const uint8_t* p, size_t n, uint64_t acc) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i a = zero, b = zero;
  while (n >= 64) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    a = _mm256_add_epi64(a, _mm256_unpacklo_epi32(v, zero));
    b = _mm256_add_epi64(b, _mm256_unpackhi_epi32(v, zero));
    a = _mm256_add_epi64(a, _mm256_unpacklo_epi32(w, zero));
    b = _mm256_add_epi64(b, _mm256_unpackhi_epi32(w, zero));
    p += 64;
    n -= 64;
  }
  a = _mm256_add_epi64(a, b);
  uint64_t lanes[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), a);
  acc += lanes[0] + lanes[1] + lanes[2] + lanes[3];
  return Sum64(p, n, acc);
}

const bool kHaveAvx2 = __builtin_cpu_supports("avx2");
#else
const bool kHaveAvx2 = false;
#endif

// The one's complement sum is byte-order independent up to a final swap:
// sum in native order, then convert the folded 16 bits.
uint32_t Combine(uint64_t native, uint32_t sum) {
  uint32_t s = NativeToHost16(Fold(native));
  uint64_t total = uint64_t{sum} + s;
  return static_cast<uint32_t>((total & 0xffffffff) + (total >> 32));
}

}  // namespace

uint32_t ChecksumAdd(std::span<const uint8_t> data, uint32_t sum) {
#if defined(__x86_64__)
  if (kHaveAvx2 && data.size() >= 128) return Combine(Sum64Avx2(data.data(), data.size(), 0), sum);
#endif
  return Combine(Sum64(data.data(), data.size(), 0), sum);
}

namespace checksum_internal {

uint32_t AddScalar(std::span<const uint8_t> data, uint32_t sum) {
  return Combine(Sum64(data.data(), data.size(), 0), sum);
}

uint32_t AddVector(std::span<const uint8_t> data, uint32_t sum) {
#if defined(__x86_64__)
  if (kHaveAvx2) return Combine(Sum64Avx2(data.data(), data.size(), 0), sum);
#endif
  return AddScalar(data, sum);
}

bool HaveVector() { return kHaveAvx2; }

}  // namespace checksum_internal

uint16_t ChecksumFinish(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint32_t PseudoHeaderSum4(const uint8_t src[4], const uint8_t dst[4], uint8_t proto,
                          uint32_t l4_len) {
  uint32_t s = ChecksumAdd(std::span<const uint8_t>(src, 4));
  s = ChecksumAdd(std::span<const uint8_t>(dst, 4), s);
  return s + proto + (l4_len & 0xffff) + (l4_len >> 16);
}

uint32_t PseudoHeaderSum6(const uint8_t src[16], const uint8_t dst[16], uint8_t proto,
                          uint32_t l4_len) {
  uint32_t s = ChecksumAdd(std::span<const uint8_t>(src, 16));
  s = ChecksumAdd(std::span<const uint8_t>(dst, 16), s);
  return s + proto + (l4_len & 0xffff) + (l4_len >> 16);
}

}  // namespace ringfwd
