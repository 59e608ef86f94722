// Drives the control server's transaction state machine in-process with
// arbitrary client bytes, and checks after every input that the forwarder's
// tables and listening sockets are exactly the old set or exactly the new
// valid set, never a mix.
//
// Input: one mode byte, then the bytes the client sends after reading the
// hello and listing. Mode bit 0 set: the client half-closes and stays to
// read its status; clear: the client is gone before its status (the server
// must undo an applied update). The fuzzer runs in its own network namespace
// (unshare), so the ports it binds are nobody else's.
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "ctl/server.h"
#include "ctl/wire.h"
#include "fwd/forwarder.h"
#include "fwd/listener.h"
#include "fwd/port_spec.h"
#include "fwd/table_swap.h"

namespace ringfwd {
namespace {

struct World {
  std::unique_ptr<Forwarder> fwd;
  std::unique_ptr<ctl::Server> server;
  std::thread loop;
  TableSet initial;
};

World* Setup() {
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("control_fuzzer: unshare(CLONE_NEWNET) (needs root)");
    std::abort();
  }
  std::system("ip link set lo up");
  rlimit rl{4096, 4096};  // bounds the listener budget, and so each input's cost
  setrlimit(RLIMIT_NOFILE, &rl);
  auto* w = new World;
  ForwarderOptions o;
  o.max_tcp_flows = 64;
  o.max_udp_flows = 64;
  auto f = Forwarder::Create(o);
  if (!f.ok()) std::abort();
  w->fwd = std::move(*f);
  TableSet t = w->fwd->EmptyTables();
  for (const char* spec : {"127.0.0.1/10000-10003:20000-20003", "::1/10010:10011"}) {
    auto rules = ParsePortSpec(spec, PortSpecOptions{PifId::kHost, kProtoTcp, {32768, 60999}});
    if (!rules.ok()) std::abort();
    t.Find(PifId::kHost)
        ->rules.insert(t.Find(PifId::kHost)->rules.end(), rules->begin(), rules->end());
  }
  if (!w->fwd->Start(t).ok()) std::abort();
  w->initial = w->fwd->Tables();
  w->loop = std::thread([w] { (void)w->fwd->Run(); });
  ctl::ServerOptions so;
  so.path = "/tmp/ringfwd-control-fuzzer.sock";
  so.timeout_ms = 50;
  auto s = ctl::Server::Start(w->fwd.get(), so);
  if (!s.ok()) std::abort();
  w->server = std::move(*s);
  return w;
}

std::vector<ListenerKey> KeysOf(const TableSet& set) {
  std::vector<ListenerKey> keys;
  for (const Table& t : set.tables)
    for (const Rule& r : t.rules)
      for (uint32_t p = r.first; p <= r.last && !r.scan(); p++) keys.push_back(KeyFor(t.pif, r, p));
  return keys;
}

bool SameKeys(std::vector<ListenerKey> a, std::vector<ListenerKey> b) {
  auto less = [](const ListenerKey& x, const ListenerKey& y) {
    return std::tie(x.pif, x.proto, x.addr.b, x.dual_stack, x.ifname, x.port) <
           std::tie(y.pif, y.proto, y.addr.b, y.dual_stack, y.ifname, y.port);
  };
  std::sort(a.begin(), a.end(), less);
  std::sort(b.begin(), b.end(), less);
  return a == b;
}

// The tables a valid update would produce, or nullopt if it is not valid.
std::optional<TableSet> Expected(const TableSet& old, const uint8_t* data, size_t size,
                                 const Forwarder& fwd) {
  auto d = wire::DecodeUpdate(wire::ByteSpan(data, size));
  if (!d.ok()) return std::nullopt;
  TableSet next = old;
  std::vector<uint8_t> seen;
  for (const auto& b : d.value.blocks) {
    if (std::find(seen.begin(), seen.end(), b.pif) != seen.end()) return std::nullopt;
    seen.push_back(b.pif);
    Table* t = next.Find(PifId(b.pif));
    if (!t) return std::nullopt;
    t->rules = b.rules;
    if (!ValidateTable(*t).ok()) return std::nullopt;
  }
  if (!ValidateTableSet(next, fwd.Context()).ok()) return std::nullopt;
  return next;
}

}  // namespace
}  // namespace ringfwd

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringfwd;
  static World* w = Setup();
  if (size < 1 || size > 200000) return 0;
  bool stays = data[0] & 1;
  const uint8_t* msg = data + 1;
  size_t len = size - 1;

  TableSet before = w->fwd->Tables();
  if (!SameKeys(w->fwd->ListenerKeys(), KeysOf(before))) std::abort();
  std::optional<TableSet> expected = Expected(before, msg, len, *w->fwd);

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  int big = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(sv[0], msg + off, len - off);
    if (n <= 0) break;
    off += n;
  }
  if (stays) {
    shutdown(sv[0], SHUT_WR);
  } else {
    close(sv[0]);
    sv[0] = -1;
  }
  w->server->Serve(Fd(sv[1]));
  if (sv[0] >= 0) close(sv[0]);

  TableSet after = w->fwd->Tables();
  bool is_old = after == before;
  bool is_new = expected && after == *expected;
  if (!is_old && !is_new) {
    std::fprintf(stderr, "tables are neither the old nor the new set\n");
    std::abort();
  }
  bool transactional = len > 0 && msg[0] == 'b';
  if (!stays && transactional && !is_old && !(expected && *expected == before)) {
    std::fprintf(stderr, "client gone before its status, yet the update stayed\n");
    std::abort();
  }
  if (!SameKeys(w->fwd->ListenerKeys(), KeysOf(after))) {
    std::fprintf(stderr, "listening sockets do not match the active tables\n");
    std::abort();
  }
  // Back to the initial tables so inputs do not pile up listeners.
  if (!(after == w->initial)) {
    TableSwap swap(w->fwd.get());
    std::vector<SwapBlock> blocks;
    for (const Table& t : w->initial.tables) blocks.push_back(SwapBlock{uint8_t(t.pif), t.rules});
    if (swap.Apply(blocks).code != SwapCode::kApplied) std::abort();
    swap.Finalize();
  }
  return 0;
}
