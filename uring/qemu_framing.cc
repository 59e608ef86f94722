#include "uring/qemu_framing.h"

namespace ringfwd {

StreamDecoder::StreamDecoder() {
  carry_[0].reset(new uint8_t[kMaxFrame]);
  carry_[1].reset(new uint8_t[kMaxFrame]);
}

void StreamDecoder::Reset() {
  have_hdr_ = 0;
  want_ = 0;
  have_body_ = 0;
  failed_ = false;
  bad_length_ = 0;
}

}  // namespace ringfwd
