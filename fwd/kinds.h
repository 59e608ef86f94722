// The kinds of io_uring submissions the forwarder makes (UserData::kind).
#pragma once

#include <cstdint>

namespace ringfwd::kind {

inline constexpr uint8_t kAccept = 1;      // multishot accept; index = listener
inline constexpr uint8_t kTcpConnect = 2;  // POLLOUT while connecting; index = TCP flow
inline constexpr uint8_t kTcpIn0 = 3;      // multishot POLLIN on side 0 (+1 for side 1)
inline constexpr uint8_t kTcpIn1 = 4;
inline constexpr uint8_t kTcpOut0 = 5;  // one-shot POLLOUT on side 0 (+1 for side 1)
inline constexpr uint8_t kTcpOut1 = 6;
inline constexpr uint8_t kUdpListen = 7;  // multishot POLLIN on a UDP listener
inline constexpr uint8_t kUdpReply = 8;   // multishot POLLIN on a UDP flow's target socket
inline constexpr uint8_t kWake = 9;       // eventfd: stop, control commands, scan results

}  // namespace ringfwd::kind
