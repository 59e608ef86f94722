// The kinds of io_uring submissions the forwarder makes (UserData::kind).
#pragma once

#include <cstdint>

namespace ringfwd::kind {

inline constexpr uint8_t kAccept = 1;      // multishot accept; index = listener
inline constexpr uint8_t kTcpConnect = 2;  // IORING_OP_CONNECT to the target; index = TCP flow
inline constexpr uint8_t kTcpIn0 = 3;      // multishot POLLIN on side 0 (+1 for side 1)
inline constexpr uint8_t kTcpIn1 = 4;
inline constexpr uint8_t kTcpOut0 = 5;  // one-shot POLLOUT on side 0 (+1 for side 1)
inline constexpr uint8_t kTcpOut1 = 6;
inline constexpr uint8_t kUdpListen = 7;  // multishot POLLIN on a UDP listener
inline constexpr uint8_t kUdpReply = 8;   // multishot POLLIN on a UDP flow's target socket
inline constexpr uint8_t kWake = 9;       // eventfd: stop, control commands, scan results

// Tap mode (tap_link.h): kinds 16-31.
inline constexpr uint8_t kTapFirst = 16;
inline constexpr uint8_t kTapRead = 16;        // a read of frames from the tap or QEMU stream
inline constexpr uint8_t kTapWrite = 17;       // a write of queued frames
inline constexpr uint8_t kTapAccept = 18;      // the QEMU stream socket's listener
inline constexpr uint8_t kTapUdp = 19;         // multishot POLLIN on a translated UDP flow's socket
inline constexpr uint8_t kTapPing = 20;        // multishot POLLIN on a ping socket
inline constexpr uint8_t kTapTcp = 21;         // multishot POLLIN on a translated TCP flow's socket
inline constexpr uint8_t kTapTcpOut = 22;      // one-shot POLLOUT: room in its send buffer
inline constexpr uint8_t kTapTcpConnect = 23;  // IORING_OP_CONNECT of a guest's SYN
inline constexpr uint8_t kTapUdpSend = 24;     // a guest's datagram sent on its flow (fails only)
inline constexpr uint8_t kTapLast = 31;

}  // namespace ringfwd::kind
