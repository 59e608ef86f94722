#include "fwd/tcp_flow.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fwd/kinds.h"
#include "uring/log.h"

namespace ringfwd {
namespace {

constexpr uint32_t kNoFlow = UINT32_MAX;
// splice() calls per direction per wake-up before yielding to other flows.
constexpr int kBudget = 8;
// POLLPRI: urgent data stops a read short of the urgent mark, so a short
// read no longer means an empty socket.
constexpr unsigned kInMask = POLLIN | POLLRDHUP | POLLPRI;

// Whether the next byte to read from `fd` is urgent data.
bool AtUrgentMark(int fd) {
  int mark = 0;
  return ioctl(fd, SIOCATMARK, &mark) == 0 && mark;
}

// recv() that also fetches TCP_INQ's hint: the bytes left in the socket
// after this read, 1 when none but the FIN is in; -1 without the hint.
ssize_t RecvInq(int fd, char* buf, size_t len, int* inq) {
  iovec iov{buf, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(fd, &msg, 0);
  if (n > 0 && msg.msg_controllen >= CMSG_LEN(sizeof(int))) {
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_level == IPPROTO_TCP && c->cmsg_type == TCP_CM_INQ)
      std::memcpy(inq, CMSG_DATA(c), sizeof(int));
  }
  return n;
}

void SetLingerZero(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

// Resets an unwanted accepted connection.
void ResetFd(Fd fd) {
  if (fd) SetLingerZero(fd.get());
}

}  // namespace

TcpFlows::TcpFlows(Ring* ring, size_t max_flows, size_t pipe_size)
    : ring_(ring), flows_(max_flows), pipes_(pipe_size, 256) {
  for (size_t i = 0; i < max_flows; i++) flows_[i].next_free = i + 1 < max_flows ? i + 1 : kNoFlow;
  free_head_ = max_flows ? 0 : kNoFlow;
  pipes_.Prime();
  ready_.reserve(max_flows * 2);
  running_.reserve(max_flows * 2);
}

TcpFlows::~TcpFlows() = default;

void TcpFlows::Start(Fd client, SocketFactory* side, const SockAddr& target,
                     const std::string& label) {
  stats_.accepted++;
  if (free_head_ == kNoFlow) {
    stats_.table_full++;
    LOG_RATELIMITED(log::Level::kWarn, "%s: flow table full (%d flows), connection reset", label,
                    flows_.size());
    ResetFd(std::move(client));
    return;
  }
  absl::StatusOr<Fd> sock = side->Socket(target.family(), SOCK_STREAM, target.addr().IsLoopback());
  if (!sock.ok()) {
    stats_.connect_failed++;
    LOG_RATELIMITED(log::Level::kWarn, "%s: %s, connection reset", label, sock.status().message());
    ResetFd(std::move(client));
    return;
  }
  // TCP_NODELAY: the accepted socket inherited it from its listener, and the
  // factory set it on the target socket (in the namespace thread's pool).
  uint32_t index = free_head_;
  Flow& f = flows_[index];
  free_head_ = f.next_free;
  active_++;
  f.sock[0] = std::move(client);
  f.sock[1] = std::move(*sock);
  f.dir[0] = Dir{};
  f.dir[1] = Dir{};
  f.early_in = false;
  f.state = Flow::kConnecting;
  // The connect goes through the ring (IORING_OP_CONNECT): its result comes
  // as a completion, with no POLLOUT to arm and no SO_ERROR to fetch. The
  // kernel copies the address when the submission is handed over, so it
  // lives in the slot until then.
  static_assert(sizeof(f.peer) >= sizeof(sockaddr_in) && sizeof(f.peer) >= sizeof(sockaddr_in6));
  socklen_t len = static_cast<socklen_t>(std::min<size_t>(target.len, sizeof(f.peer)));
  std::memcpy(&f.peer, target.sa(), len);
  ring_->PrepConnect(f.sock[1].get(), reinterpret_cast<const sockaddr*>(&f.peer), len,
                     Ud(kind::kTcpConnect, index));
  // The client's side is watched from the start: a client that leaves while
  // the target does not answer must not hold its slot until connect times out.
  ArmIn(index, 0);
}

void TcpFlows::Open(uint32_t index) {
  Flow& f = flows_[index];
  f.state = Flow::kOpen;
  ArmIn(index, 1);
  // Bytes or a FIN the client sent while connecting were seen by the poll
  // but left in the socket; the poll will not report them again.
  if (f.early_in) Move(index, 0);
}

bool TcpFlows::ClientGone(uint32_t index, unsigned revents) {
  Flow& f = flows_[index];
  if (revents & (POLLERR | POLLHUP)) return true;  // reset, or both ways shut
  if (!(revents & POLLRDHUP)) return false;        // bytes only: forwarded once open
  // A FIN. A client that sent a request and half-closed still wants the reply;
  // one that sent nothing has most likely closed (TCP cannot tell the two
  // apart), and holding its slot for a target that does not answer helps no one.
  int queued = 0;
  if (ioctl(f.sock[0].get(), FIONREAD, &queued) < 0) return true;
  return queued == 0;
}

void TcpFlows::ArmIn(uint32_t index, int side) {
  Flow& f = flows_[index];
  ring_->PrepPollMultishot(f.sock[side].get(), kInMask, Ud(kind::kTcpIn0 + side, index));
  f.in_armed[side] = true;
}

void TcpFlows::HandleCompletion(const io_uring_cqe& cqe, UserData ud) {
  if (ud.index >= flows_.size()) return;
  Flow& f = flows_[ud.index];
  if (f.state == Flow::kFree || f.gen != (ud.gen & UserData::kGenMask)) return;  // stale
  switch (ud.kind) {
    case kind::kTcpConnect: {
      if (f.state != Flow::kConnecting) return;
      if (cqe.res < 0) {
        stats_.connect_failed++;
        SockAddr peer;
        peer.len = f.peer.sin6_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        std::memcpy(&peer.ss, &f.peer, peer.len);
        LOG_RATELIMITED(log::Level::kInfo, "connect to %s: %s, connection reset", peer.ToString(),
                        std::strerror(-cqe.res));
        Close(ud.index, true);
        return;
      }
      Open(ud.index);
      return;
    }
    case kind::kTcpIn0:
    case kind::kTcpIn1: {
      int side = ud.kind - kind::kTcpIn0;
      if (!(cqe.flags & IORING_CQE_F_MORE)) {
        f.in_armed[side] = false;
        // The multishot poll ended (overflow, or an error); arm it again
        // unless that direction is finished.
        if (!f.dir[side].eof) ArmIn(ud.index, side);
      }
      if (cqe.res < 0) return;
      NoteInEvents(&f.dir[side], static_cast<unsigned>(cqe.res));
      if (f.state == Flow::kConnecting) {
        if (ClientGone(ud.index, static_cast<unsigned>(cqe.res))) {
          stats_.connect_failed++;
          LOG_RATELIMITED(log::Level::kDebug, "client left while connecting to the target");
          Close(ud.index, (cqe.res & POLLERR) != 0);
          return;
        }
        f.early_in = true;
        return;
      }
      Move(ud.index, side);
      return;
    }
    case kind::kTcpOut0:
    case kind::kTcpOut1: {
      int side = ud.kind - kind::kTcpOut0;  // the destination socket that drained
      int d = 1 - side;
      f.dir[d].out_wait = false;
      Move(ud.index, d);
      return;
    }
    default:
      return;
  }
}

void TcpFlows::NoteInEvents(Dir* D, unsigned revents) {
  if (revents & POLLRDHUP) D->fin_seen = true;
  if (revents & (POLLHUP | POLLERR | POLLPRI)) D->odd_seen = true;
  if (revents & (POLLHUP | POLLERR)) D->err_seen = true;
}

TcpFlows::Step TcpFlows::Copy(uint32_t index, int d) {
  Flow& f = flows_[index];
  Dir& D = f.dir[d];
  int in = f.sock[d].get();
  int out = f.sock[1 - d].get();
  // TCP_INQ (set on both sockets) says how much the socket still holds after
  // the read: 0 means empty, so a short read needs no second read to tell
  // that urgent data (a read stops short at its mark) or the FIN is behind.
  int inq = -1;
  ssize_t n = RecvInq(in, scratch_, kScratch, &inq);
  if (n == 0) {
    D.eof = true;
    return Step::kDone;
  }
  if (n < 0) {
    if (errno == EINTR) return Step::kAgain;
    if (errno == EAGAIN) return Step::kDone;
    Close(index, true);  // ECONNRESET, ETIMEDOUT...
    return Step::kGone;
  }
  bool fin = false;
  bool drained = false;  // a read found the socket empty
  if (n < kScratch && inq == 0 && !D.err_seen) {
    drained = true;  // nothing behind: no data, no urgent byte, no FIN
  } else if (n < kScratch && D.fin_seen && !D.odd_seen) {
    // A short read after the poll saw a plain FIN: every byte before the FIN
    // was queued, so the read reached it. No need to read the EOF.
    fin = true;
  } else if (n < kScratch && (inq > 0 || D.fin_seen || D.odd_seen)) {
    ssize_t z = recv(in, scratch_ + n, kScratch - n, 0);
    if (z == 0) {
      fin = true;
    } else if (z > 0) {
      n += z;
    } else if (errno == EAGAIN) {
      drained = true;
    } else if (errno != EINTR) {
      // A reset behind the bytes: they go first, as the peer would have
      // read them from a direct connection (best effort: the socket is
      // non-blocking and about to be reset).
      ssize_t m = send(out, scratch_, n, MSG_NOSIGNAL);
      if (m > 0) stats_.bytes += m;
      Close(index, true);
      return Step::kGone;
    }
  }
  // When the source's FIN is in, the bytes go with MSG_MORE: the shutdown
  // that follows puts the FIN into the same segment.
  ssize_t m = send(out, scratch_, n, MSG_NOSIGNAL | (fin ? MSG_MORE : 0));
  if (m < 0) {
    if (errno != EAGAIN && errno != EINTR) {
      Close(index, true);
      return Step::kGone;
    }
    m = 0;
  }
  stats_.bytes += m;
  if (fin) D.eof = true;
  if (m < n) {
    // The destination is full: the rest waits in a pipe (an empty pipe takes
    // at least a page, and kScratch is one) until POLLOUT.
    if (!pipes_.Get(&D.pipe)) {
      LOG_RATELIMITED(log::Level::kWarn, "cannot create a pipe: %s; connection reset",
                      std::strerror(errno));
      Close(index, true);
      return Step::kGone;
    }
    ssize_t w = write(D.pipe.w.get(), scratch_ + m, n - m);
    if (w != n - m) {
      Close(index, true);
      return Step::kGone;
    }
    D.pending = static_cast<uint32_t>(w);
    D.out_wait = true;
    ring_->PrepPoll(out, POLLOUT, Ud(kind::kTcpOut0 + (1 - d), index));
    return Step::kGone;
  }
  if (fin) return Step::kDone;
  if (n == kScratch) {
    D.bulk = true;  // more is likely waiting: splice from now on
    return Step::kAgain;
  }
  // A short read emptied the socket: bytes that arrive later fire the poll
  // again. After a FIN, error or urgent data was reported, read on, unless
  // the second read already found the socket empty. (io_uring reports the
  // wake-up's own mask, and a socket's data wake-up always says POLLPRI:
  // odd_seen is set on every flow, so that second read is the check.)
  if (drained) return Step::kDone;
  return D.fin_seen || D.odd_seen ? Step::kAgain : Step::kDone;
}

void TcpFlows::Move(uint32_t index, int d) {
  Flow& f = flows_[index];
  if (f.state != Flow::kOpen) return;
  Dir& D = f.dir[d];
  if (D.out_wait) return;  // parked until the destination drains
  int in = f.sock[d].get();
  int out = f.sock[1 - d].get();
  int iter = 0;
  bool spliced = false;  // a splice from the source moved bytes in this call
  for (; iter < kBudget; iter++) {
    if (D.pending) {
      ssize_t m = splice(D.pipe.r.get(), nullptr, out, nullptr, D.pending,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          D.out_wait = true;
          ring_->PrepPoll(out, POLLOUT, Ud(kind::kTcpOut0 + (1 - d), index));
          return;
        }
        Close(index, true);
        return;
      }
      D.pending -= m;
      stats_.bytes += m;
      if (D.pending) continue;
    }
    if (D.eof) break;
    if (!D.bulk) {
      Step st = Copy(index, d);
      if (st == Step::kGone) return;
      if (st == Step::kDone) break;
      continue;
    }
    if (!D.pipe && !pipes_.Get(&D.pipe)) {
      LOG_RATELIMITED(log::Level::kWarn, "cannot create a pipe: %s; connection reset",
                      std::strerror(errno));
      Close(index, true);
      return;
    }
    ssize_t n = splice(in, nullptr, D.pipe.w.get(), nullptr, pipes_.capacity(),
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      spliced = true;
      D.pending += n;
      // A small read: back to copying once the pipe has drained.
      if (n < kScratch) D.bulk = false;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // splice() stops short of urgent data (MSG_OOB): at the mark it reports
    // nothing, or 0 once the FIN is in too, which is not the end. recv()
    // takes the byte inline (SO_OOBINLINE, set on both sockets), so copy
    // past it. The poll cannot tell (io_uring reports the wake-up's mask,
    // and every data wake-up says POLLPRI), so the mark is checked where it
    // is cheap: at every 0 (once per direction), and at an EAGAIN when the
    // wake-up moved nothing (data behind a mark wakes us and finds nothing
    // to splice). Not at the EAGAIN that ends every busy wake-up: that check
    // cost 5-7% of the CPU per GiB. So urgent data at the very end of a
    // burst in bulk mode waits for the sender's next bytes or FIN (the copy
    // path of small exchanges, where urgent data is used, always reads on).
    if ((n == 0 || (errno == EAGAIN && !spliced)) && AtUrgentMark(in)) {
      D.bulk = false;
      continue;
    }
    if (n == 0) {
      D.eof = true;
      break;
    }
    if (errno == EAGAIN) break;
    Close(index, true);  // ECONNRESET, ETIMEDOUT...
    return;
  }
  if (iter == kBudget && !D.queued) {
    D.queued = true;
    ready_.push_back(ReadyItem{index, f.gen, static_cast<uint8_t>(d)});
  }
  if (D.pending == 0 && D.pipe) pipes_.Put(std::move(D.pipe));
  if (D.eof && D.pending == 0 && !D.shut) {
    // The last direction to finish needs no shutdown: closing both sockets
    // sends that FIN too.
    if (f.dir[1 - d].shut) {
      Close(index, false);
      return;
    }
    shutdown(out, SHUT_WR);
    D.shut = true;
  }
  if (f.dir[0].shut && f.dir[1].shut) Close(index, false);
}

void TcpFlows::RunReady() {
  running_.swap(ready_);
  for (const ReadyItem& r : running_) {
    Flow& f = flows_[r.index];
    if (f.state == Flow::kFree || f.gen != r.gen) continue;
    f.dir[r.dir].queued = false;
    Move(r.index, r.dir);
  }
  running_.clear();
}

void TcpFlows::Close(uint32_t index, bool reset) {
  Flow& f = flows_[index];
  for (int s = 0; s < 2; s++) {
    if (f.in_armed[s]) ring_->PrepCancel(Ud(kind::kTcpIn0 + s, index));
    // A parked direction d has POLLOUT armed on socket 1 - d.
    if (f.dir[1 - s].out_wait) ring_->PrepCancel(Ud(kind::kTcpOut0 + s, index));
  }
  if (f.state == Flow::kConnecting) ring_->PrepCancel(Ud(kind::kTcpConnect, index));
  if (reset) {
    stats_.resets++;
    for (auto& s : f.sock)
      if (s) SetLingerZero(s.get());
  } else {
    stats_.closed++;
  }
  // After the submissions that name them (a poll armed in this batch).
  for (auto& s : f.sock) ring_->Close(std::move(s));
  for (auto& d : f.dir) {
    if (d.pending)
      pipes_.Discard(std::move(d.pipe));
    else
      pipes_.Put(std::move(d.pipe));
    d = Dir{};
  }
  f.in_armed[0] = f.in_armed[1] = false;
  f.state = Flow::kFree;
  f.gen = (f.gen + 1) & UserData::kGenMask;
  f.next_free = free_head_;
  free_head_ = index;
  active_--;
}

void TcpFlows::CloseAll() {
  for (uint32_t i = 0; i < flows_.size(); i++)
    if (flows_[i].state != Flow::kFree) Close(i, true);
}

}  // namespace ringfwd
