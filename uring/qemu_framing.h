// The framing of QEMU's stream netdev (and passt): every Ethernet frame on
// the stream is preceded by its length, 4 bytes big-endian, not counting the
// prefix.
//
// Theory of operation. StreamDecoder is a state machine fed with whatever
// chunks the socket returns: it is either collecting the 4 length bytes, or
// collecting the body of a frame. A frame wholly inside the current chunk is
// handed out in place (no copy); a frame that started in an earlier chunk is
// assembled in a carry buffer and handed out once complete. Two carry
// buffers alternate, so a frame completed from the carry stays valid while a
// new partial frame at the end of the same chunk is being collected. A length
// outside [kMinFrame, kMaxFrame] puts the decoder in the failed state for
// good: the stream cannot be resynchronised and its peer must be dropped.
// Nothing is allocated after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

namespace ringfwd {

inline constexpr size_t kStreamPrefix = 4;
inline constexpr uint32_t kMinFrame = 14;     // an Ethernet header
inline constexpr uint32_t kMaxFrame = 65535;  // what QEMU and passt accept

// Writes the 4-byte prefix of a frame of `len` bytes into `out`.
inline void EncodeFramePrefix(uint32_t len, uint8_t* out) {
  out[0] = static_cast<uint8_t>(len >> 24);
  out[1] = static_cast<uint8_t>(len >> 16);
  out[2] = static_cast<uint8_t>(len >> 8);
  out[3] = static_cast<uint8_t>(len);
}

class StreamDecoder {
 public:
  StreamDecoder();

  // Feeds the next `chunk` of the stream and calls on_frame(std::span<const
  // uint8_t>) for every frame it completes, in order. A span is valid until
  // the next Feed() (frames in place: as long as `chunk` is too). Returns
  // false once a bad length was seen (and for every later call); frames
  // before the bad length were still delivered.
  template <typename OnFrame>
  bool Feed(std::span<const uint8_t> chunk, OnFrame&& on_frame) {
    if (failed_) return false;
    size_t pos = 0;
    while (pos < chunk.size()) {
      if (have_hdr_ < kStreamPrefix) {
        // Fast path: a whole frame in place.
        if (have_hdr_ == 0 && chunk.size() - pos >= kStreamPrefix) {
          uint32_t len = Load32(chunk.data() + pos);
          if (!Valid(len)) return Fail(len);
          if (chunk.size() - pos - kStreamPrefix >= len) {
            on_frame(chunk.subspan(pos + kStreamPrefix, len));
            pos += kStreamPrefix + len;
            continue;
          }
        }
        hdr_[have_hdr_++] = chunk[pos++];
        if (have_hdr_ < kStreamPrefix) continue;
        want_ = Load32(hdr_);
        if (!Valid(want_)) return Fail(want_);
        have_body_ = 0;
        cur_ ^= 1;
        continue;
      }
      size_t n = std::min(chunk.size() - pos, size_t{want_} - have_body_);
      std::memcpy(carry_[cur_].get() + have_body_, chunk.data() + pos, n);
      have_body_ += n;
      pos += n;
      if (have_body_ == want_) {
        on_frame(std::span<const uint8_t>(carry_[cur_].get(), want_));
        have_hdr_ = 0;
      }
    }
    return true;
  }

  bool failed() const { return failed_; }
  // The length that failed the stream (meaningful once failed()).
  uint32_t bad_length() const { return bad_length_; }
  // Bytes of an incomplete frame (prefix included) held from earlier chunks.
  size_t pending() const {
    return have_hdr_ < kStreamPrefix ? have_hdr_ : kStreamPrefix + have_body_;
  }
  // Forgets any partial frame and a failure (a new peer on the stream).
  void Reset();

 private:
  static uint32_t Load32(const uint8_t* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  }
  static bool Valid(uint32_t len) { return len >= kMinFrame && len <= kMaxFrame; }
  bool Fail(uint32_t len) {
    failed_ = true;
    bad_length_ = len;
    return false;
  }

  uint8_t hdr_[kStreamPrefix] = {};
  size_t have_hdr_ = 0;
  uint32_t want_ = 0;
  size_t have_body_ = 0;
  std::unique_ptr<uint8_t[]> carry_[2];
  int cur_ = 0;
  bool failed_ = false;
  uint32_t bad_length_ = 0;
};

}  // namespace ringfwd
