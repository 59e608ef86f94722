// The Internet checksum (RFC 1071) over byte spans, and the IPv4/IPv6
// pseudo-headers of UDP, TCP and ICMPv6.
//
// A checksum is built in two steps: sums of 16-bit big-endian words are
// accumulated into a 32-bit partial sum (ChecksumAdd, PseudoHeaderSum*), then
// folded and complemented (ChecksumFinish) into the value that goes on the
// wire. A span of odd length is padded with a zero byte, so only the last
// span of a sum may have an odd length. Verification of a received header or
// segment: the sum over it (checksum field included) finishes to 0.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <span>

namespace ringfwd {

// Adds the 16-bit big-endian words of `data` to the partial sum `sum` and
// returns the new partial sum (not yet folded). Fast: 64-bit accumulation,
// with AVX2 when the CPU has it (32 bytes per step).
uint32_t ChecksumAdd(std::span<const uint8_t> data, uint32_t sum = 0);

// Folds a partial sum to 16 bits and complements it: the checksum field's
// value in host byte order (store it big-endian).
uint16_t ChecksumFinish(uint32_t sum);

// Convenience: ChecksumFinish(ChecksumAdd(data)).
inline uint16_t Checksum(std::span<const uint8_t> data) {
  return ChecksumFinish(ChecksumAdd(data));
}

// Partial sums of the pseudo-headers: addresses as 4 or 16 network-order
// bytes, the L4 protocol (IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMPV6) and the
// L4 length (header + payload) in host order.
uint32_t PseudoHeaderSum4(const uint8_t src[4], const uint8_t dst[4], uint8_t proto,
                          uint32_t l4_len);
uint32_t PseudoHeaderSum6(const uint8_t src[16], const uint8_t dst[16], uint8_t proto,
                          uint32_t l4_len);

namespace checksum_internal {
// The same partial sum computed the portable way, and with AVX2 where the
// CPU has it (ChecksumAdd picks the latter at run time); for tests.
uint32_t AddScalar(std::span<const uint8_t> data, uint32_t sum);
uint32_t AddVector(std::span<const uint8_t> data, uint32_t sum);
bool HaveVector();
}  // namespace checksum_internal

}  // namespace ringfwd
