// QemuStream: the frame source of passt mode, a UNIX stream socket that a
// VM connects to (QEMU's -netdev stream,addr.type=unix), frames carried with
// a 4-byte big-endian length prefix (qemu_framing.h).
//
// Theory of operation. The listener has a multishot accept on the ring. The
// first peer becomes the client; a peer arriving while one is connected is
// refused (closed, with a log line). The client has one receive in flight
// into a large buffer; the completed chunk is decoded by DeliverReceived()
// (partial frames carried to the next chunk by the decoder) and the frames
// handed to the receiver in batches, then the next receive is submitted. A
// bad length, an error or EOF drops the client: its socket is shut down, its
// requests cancelled, and the source waits for the next peer. Output: frames
// are built in place, each behind its prefix, in the fill buffer; Flush()
// hands the fill buffer to the kernel as one send while the other buffer
// takes new frames. Only one send is ever in flight, and a short send is
// continued from where it stopped before anything else is sent, so the
// stream stays aligned. Requests of a dropped client complete later with an
// old generation; buffers are reused only once they have.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "uring/fd.h"
#include "uring/qemu_framing.h"
#include "uring/ring.h"
#include "uring/tap_device.h"

namespace ringfwd {

class QemuStream : public FrameSource {
 public:
  // Binds and listens on `path` (a stale socket file there is replaced).
  static absl::StatusOr<Fd> Listen(const std::string& path);

  // Takes the listening socket; frames up to `mtu` + 14 bytes out.
  QemuStream(Ring* ring, Fd listener, std::string path, FrameReceiver* rx, size_t mtu,
             FrameSourceKinds kinds);
  // Removes the socket file.
  ~QemuStream() override;

  void Start() override;
  void HandleCompletion(const io_uring_cqe& cqe, UserData ud) override;
  void DeliverReceived() override;
  void Flush() override;
  bool Connected() const override { return client_.valid(); }
  size_t MaxFrame() const override { return max_frame_; }
  const FrameSourceStats& stats() const override { return stats_; }

  std::span<uint8_t> Reserve(size_t max_len) override;
  void Commit(size_t len) override;

  // Bytes of a partial frame waiting for the rest (for tests and logs).
  size_t pending_in() const { return decoder_.pending(); }

 private:
  void ArmAccept();
  void SubmitRecv();
  void SubmitSend();
  void DropClient(const char* why);
  void Deliver(std::span<const uint8_t> frame);

  static constexpr size_t kRecvBuf = 256 * 1024;
  static constexpr size_t kSendBuf = 1024 * 1024;
  static constexpr size_t kBatch = 64;

  Ring* ring_;
  Fd listener_;
  std::string path_;
  FrameReceiver* rx_;
  size_t max_frame_;
  FrameSourceKinds kinds_;
  bool accept_armed_ = false;

  Fd client_;
  uint32_t gen_ = 0;  // of the current client; bumped when it is dropped
  StreamDecoder decoder_;

  std::unique_ptr<uint8_t[]> rbuf_;
  bool recv_busy_ = false;  // the kernel holds rbuf_
  size_t rlen_ = 0;         // bytes of a completed receive, not yet decoded
  std::vector<std::span<const uint8_t>> batch_;

  std::unique_ptr<uint8_t[]> sbuf_[2];
  int fill_ = 0;            // the buffer taking new frames
  size_t fill_len_ = 0;     // bytes queued in it
  bool send_busy_ = false;  // the kernel holds sbuf_[fill_ ^ 1]
  size_t send_len_ = 0;     // of the buffer in flight
  size_t send_off_ = 0;     // bytes of it already sent
  size_t reserved_ = 0;     // max_len of the open reservation (0: none)

  FrameSourceStats stats_;
};

}  // namespace ringfwd
