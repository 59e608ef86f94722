// TCP flows: one accepted connection joined to one target connection.
//
// Theory of operation. A flow is a preallocated slot with a generation
// number; every submission for it carries (kind, generation, index), so a
// completion that arrives after the slot was freed and reused is recognised
// and dropped.
//
//   Start ---> CONNECTING --(IORING_OP_CONNECT done)--> OPEN --(both
//   directions shut)--> closed        any error or reset --> reset both
//
// The client's socket is polled from the start. While CONNECTING its bytes
// wait in the socket (forwarded once OPEN), but a reset, or a FIN with
// nothing sent before it, means the client has left: the flow is torn down
// at once instead of holding its slot until the connect times out.
//
// In OPEN, each socket has a multishot POLLIN armed. A direction moves bytes
// on this thread in one of two modes. Copy mode (the start): recv into a
// one-page buffer of the loop, send from it; one read filling the page
// switches to splice mode: splice(2) from the socket into a pooled pipe and
// from the pipe into the other socket (io_uring's own splice runs on worker
// threads and was slower; see README); a splice read under a page switches
// back once the pipe has drained. A short read means the socket was empty,
// and later bytes fire the poll again, so there is no read for EAGAIN; once
// the poll has reported a FIN the source is read to EOF, and the last bytes
// go with MSG_MORE so that the FIN leaves in the same segment. A direction
// takes a pipe from the pool only while bytes are in flight (in splice mode,
// or what a short send left over in copy mode). When the destination is full
// the direction parks (a one-shot POLLOUT is armed) and stops reading its
// source, so the source's kernel buffer fills and TCP flow control pushes
// back on the peer: nothing is buffered here beyond one pipe. EOF on a
// source, once its pipe is drained, becomes shutdown(SHUT_WR) on the
// destination (half-close); a reset or error on either side closes both with
// SO_LINGER 0, so the other peer sees a reset too. Work per wake-up is
// bounded; a direction with more to do goes on a ready list that runs after
// the current batch of completions.
#pragma once

#include <liburing.h>
#include <netinet/in.h>

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fwd/addr.h"
#include "fwd/netns.h"
#include "fwd/pipe_pool.h"
#include "uring/fd.h"
#include "uring/ring.h"
#include "uring/user_data.h"

namespace ringfwd {

struct TcpStats {
  uint64_t accepted = 0;
  uint64_t connect_failed = 0;
  uint64_t resets = 0;
  uint64_t closed = 0;
  uint64_t table_full = 0;
  uint64_t bytes = 0;
};

class TcpFlows {
 public:
  // `max_flows` slots are allocated now; pipes are `pipe_size` bytes.
  TcpFlows(Ring* ring, size_t max_flows, size_t pipe_size);
  ~TcpFlows();

  // Takes an accepted connection and starts connecting to `target` with a
  // socket from `side`. On any failure the client is reset and the reason
  // logged (rate-limited) with `label` (the rule).
  void Start(Fd client, SocketFactory* side, const SockAddr& target, const std::string& label);

  // Handles a completion of kind kTcpConnect, kTcpIn0/1 or kTcpOut0/1.
  void HandleCompletion(const io_uring_cqe& cqe, UserData ud);

  // Continues directions that ran out of budget in the last batch.
  void RunReady();
  bool HasReady() const { return !ready_.empty(); }

  // Resets every open flow (shutdown).
  void CloseAll();

  size_t active() const { return active_; }
  const TcpStats& stats() const { return stats_; }
  const PipePool& pipes() const { return pipes_; }

 private:
  struct Dir {
    Pipe pipe;
    uint32_t pending = 0;   // bytes in the pipe
    bool eof = false;       // source reached EOF
    bool shut = false;      // destination shut down for writing
    bool out_wait = false;  // POLLOUT armed on the destination
    bool queued = false;    // on the ready list
    // From the source's poll: fin_seen once it reported a FIN (POLLRDHUP),
    // odd_seen once it reported a hang-up, an error or urgent data. Either
    // way the source is read until EAGAIN or EOF; after a plain FIN a short
    // read has reached the FIN (every byte before it was queued). err_seen
    // once it reported an error or hang-up: a read that empties the queue
    // has not yet read the error (a reset behind the last bytes), and the
    // poll will not report it again.
    bool fin_seen = false;
    bool odd_seen = false;
    bool err_seen = false;
    bool bulk = false;  // moving by splice; else copying via scratch_
  };
  struct Flow {
    enum State : uint8_t { kFree, kConnecting, kOpen };
    State state = kFree;
    uint32_t gen = 0;
    Fd sock[2];  // 0: accepted side, 1: target side
    Dir dir[2];  // dir[i] moves sock[i] -> sock[1 - i]
    bool in_armed[2] = {false, false};
    bool early_in = false;  // the client's poll fired while CONNECTING
    sockaddr_in6 peer{};    // the target (or a sockaddr_in), for the connect
    uint32_t next_free = 0;
  };
  struct ReadyItem {
    uint32_t index;
    uint32_t gen;
    uint8_t dir;
  };

  uint64_t Ud(uint8_t kind, uint32_t index) const {
    return UserData{kind, flows_[index].gen, index}.Pack();
  }
  void Open(uint32_t index);
  // While CONNECTING: whether the client's poll events `revents` mean it
  // has left (reset, or FIN with no bytes sent).
  bool ClientGone(uint32_t index, unsigned revents);
  void ArmIn(uint32_t index, int side);
  void Move(uint32_t index, int d);
  enum class Step { kAgain, kDone, kGone };
  // Records what the source's poll reported (revents) in `D`.
  static void NoteInEvents(Dir* D, unsigned revents);
  // Moves one read's worth of direction `d` through scratch_ (recv, send):
  // kAgain to go on, kDone when the source is drained or at EOF, kGone when
  // the flow was closed or the direction parked.
  Step Copy(uint32_t index, int d);
  void Close(uint32_t index, bool reset);

  Ring* ring_;
  std::vector<Flow> flows_;
  uint32_t free_head_;
  size_t active_ = 0;
  PipePool pipes_;
  std::vector<ReadyItem> ready_;
  std::vector<ReadyItem> running_;
  TcpStats stats_;
  // Small reads are copied through this buffer (one recv and one send
  // instead of two splices through a pipe); a read that fills it switches
  // the direction to splice. One page: an empty pipe always has room for
  // what a short send leaves behind.
  static constexpr ssize_t kScratch = 4096;
  alignas(64) char scratch_[kScratch];
};

}  // namespace ringfwd
