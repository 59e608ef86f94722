// TCP through the forwarder: bytes intact both ways at several sizes, many
// transfers at once, half-close, resets, and a backend that is not there.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace ringfwd::e2e {
namespace {

constexpr uint16_t kListenPort = 8080;
constexpr uint16_t kTargetPort = 80;

class TcpTest : public E2eTest {
 protected:
  Addr Front() const { return Addr::Of("127.0.0.1", kListenPort); }
  Addr Back() const { return Addr::Of("127.0.0.1", kTargetPort); }

  // A client connected to the forwarder's listener; fails the test if not.
  Fd Connect() {
    int err = 0;
    Fd fd = TcpConnect(*host_, Front(), &err);
    EXPECT_TRUE(fd) << "connect " << Front().ToString() << ": " << std::strerror(err);
    return fd;
  }

  // Sends `size` bytes through an echo server and checks what comes back.
  void EchoThrough(uint64_t size, uint64_t seed) {
    EchoServer echo(TcpListen(*target_, Back()));
    auto d = StartForwarder({"-t", "8080:80"});
    ASSERT_TRUE(d);
    Fd c = Connect();
    ASSERT_TRUE(c);
    ExchangeResult r = Exchange(c.get(), seed, size, true, In(20000 * Slowdown()));
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    EXPECT_EQ(r.sent, size);
    EXPECT_EQ(r.received, size);
    EXPECT_EQ(r.recv_digest, PatternDigest(seed, size));
  }

  // Uploads `size` bytes; the server replies with the count and digest it saw.
  void Upload(uint64_t size, uint64_t seed, int timeout_ms) {
    Fd c = Connect();
    ASSERT_TRUE(c);
    Deadline deadline = In(timeout_ms);
    ASSERT_EQ(SendAll(c.get(), TransferHeader('U', seed, size), deadline), 0);
    ExchangeResult r = Exchange(c.get(), seed, size, true, deadline);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    EXPECT_EQ(r.sent, size);
    EXPECT_EQ(r.head, TransferReply(size, PatternDigest(seed, size)))
        << "the server did not see exactly the bytes sent";
  }

  // Downloads `size` bytes of a pattern the server generates.
  void Download(uint64_t size, uint64_t seed, int timeout_ms) {
    Fd c = Connect();
    ASSERT_TRUE(c);
    Deadline deadline = In(timeout_ms);
    ASSERT_EQ(SendAll(c.get(), TransferHeader('D', seed, size), deadline), 0);
    ExchangeResult r = Exchange(c.get(), 0, 0, false, deadline);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    EXPECT_EQ(r.received, size);
    EXPECT_EQ(r.recv_digest, PatternDigest(seed, size));
  }

  void BothWays(uint64_t size, uint64_t seed, int timeout_ms) {
    TcpServer server(TcpListen(*target_, Back()), TransferHandler);
    auto d = StartForwarder({"-t", "8080:80"});
    ASSERT_TRUE(d);
    Upload(size, seed, timeout_ms);
    Download(size, seed + 1, timeout_ms);
    EXPECT_EQ(d->Stop(), 0);
  }
};

TEST_F(TcpTest, EchoOneByte) { EchoThrough(1, 1); }
TEST_F(TcpTest, Echo64KiBPlusOne) { EchoThrough(65537, 2); }
TEST_F(TcpTest, Echo1MiB) { EchoThrough(1 << 20, 3); }

TEST_F(TcpTest, OneByteEachWay) { BothWays(1, 10, 5000 * Slowdown()); }
TEST_F(TcpTest, SixtyFourKiBPlusOneEachWay) { BothWays(65537, 20, 5000 * Slowdown()); }
TEST_F(TcpTest, OneMiBEachWay) { BothWays(1 << 20, 30, 5000 * Slowdown()); }
TEST_F(TcpTest, TwoHundredFiftySixMiBEachWay) {
  BothWays(uint64_t{256} << 20, 40, 30000 * Slowdown());
}

// 1 MiB each way over IPv6 on both sides.
TEST_F(TcpTest, Ipv6Transfer) {
  EchoServer echo(TcpListen(*target_, Addr::Of("::1", kTargetPort)));
  auto d = StartForwarder({"-t", "::1/8080:80"});
  ASSERT_TRUE(d);
  int err = 0;
  Fd c = TcpConnect(*host_, Addr::Of("::1", kListenPort), &err);
  ASSERT_TRUE(c) << std::strerror(err);
  ExchangeResult r = Exchange(c.get(), 6, 1 << 20, true, In(10000 * Slowdown()));
  EXPECT_EQ(r.err, 0) << std::strerror(r.err);
  EXPECT_EQ(r.received, 1u << 20);
  EXPECT_EQ(r.recv_digest, PatternDigest(6, 1 << 20));
}

// 50 clients at once, 1 MiB each through one echo server: every one gets
// exactly its own bytes back.
TEST_F(TcpTest, FiftyConcurrentTransfers) {
  EchoServer echo(TcpListen(*target_, Back()));
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  constexpr int kClients = 50;
  constexpr uint64_t kSize = 1 << 20;
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect());
    ASSERT_TRUE(clients.back());
  }
  std::vector<ExchangeResult> results(kClients);
  std::vector<std::thread> threads;
  Deadline deadline = In(20000 * Slowdown());
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = Exchange(clients[i].get(), 1000 + i, kSize, true, deadline); });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(results[i].err, 0) << "client " << i << ": " << std::strerror(results[i].err);
    EXPECT_EQ(results[i].received, kSize) << "client " << i;
    EXPECT_EQ(results[i].recv_digest, PatternDigest(1000 + i, kSize)) << "client " << i;
  }
  EXPECT_EQ(echo.accepted(), kClients);
}

// The client shuts down its sending side; the server sees EOF, then replies,
// and the client still gets the whole reply.
TEST_F(TcpTest, HalfCloseStillReceivesReply) {
  constexpr uint64_t kRequest = 100000;
  constexpr uint64_t kReply = 1 << 20;
  std::atomic<uint64_t> seen_count{0}, seen_digest{0};
  TcpServer server(TcpListen(*target_, Back()), [&](Fd conn) {
    Deadline deadline = In(10000 * Slowdown());
    ExchangeResult in = Exchange(conn.get(), 0, 0, false, deadline);  // to EOF
    if (in.err != 0) return;
    seen_count = in.received;
    seen_digest = in.recv_digest;
    Exchange(conn.get(), 77, kReply, true, deadline);
  });
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  Fd c = Connect();
  ASSERT_TRUE(c);
  ExchangeResult r = Exchange(c.get(), 76, kRequest, true, In(10000 * Slowdown()));
  EXPECT_EQ(r.err, 0) << std::strerror(r.err);
  EXPECT_EQ(seen_count.load(), kRequest);
  EXPECT_EQ(seen_digest.load(), PatternDigest(76, kRequest));
  EXPECT_EQ(r.received, kReply);
  EXPECT_EQ(r.recv_digest, PatternDigest(77, kReply));
}

// The client's FIN arrives while its earlier bytes are still buffered in the
// forwarder (the server has not read anything yet): the server still gets
// every byte before its EOF, and its reply reaches the client.
TEST_F(TcpTest, FinAfterBufferedData) {
  constexpr uint64_t kSize = 2 << 20;
  std::atomic<bool> client_done{false};
  std::atomic<uint64_t> seen_count{0}, seen_digest{0};
  TcpServer server(TcpListen(*target_, Back()), [&](Fd conn) {
    Deadline deadline = In(10000 * Slowdown());
    while (!client_done && Clock::now() < deadline) usleep(2000);
    ExchangeResult in = Exchange(conn.get(), 0, 0, false, deadline);
    seen_count = in.received;
    seen_digest = in.recv_digest;
    if (in.err == 0) SendAll(conn.get(), "done", deadline);
  });
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  Fd c = Connect();
  ASSERT_TRUE(c);
  std::string data = Pattern(11).Bytes(0, kSize);
  ASSERT_EQ(SendAll(c.get(), data, In(5000 * Slowdown())), 0)
      << "the buffers on the way did not take 2 MiB";
  shutdown(c.get(), SHUT_WR);
  client_done = true;
  std::string reply;
  EXPECT_EQ(RecvToEof(c.get(), &reply, In(10000 * Slowdown())), 0);
  EXPECT_EQ(reply, "done");
  EXPECT_EQ(seen_count.load(), kSize);
  EXPECT_EQ(seen_digest.load(), DigestOf(data));
}

// The server shuts down its sending side first; the client sees EOF and can
// still send, and the server gets all of it.
TEST_F(TcpTest, ServerHalfCloseClientKeepsSending) {
  constexpr uint64_t kSize = 1 << 20;
  std::atomic<uint64_t> seen_count{0}, seen_digest{0};
  TcpServer server(TcpListen(*target_, Back()), [&](Fd conn) {
    shutdown(conn.get(), SHUT_WR);
    ExchangeResult in = Exchange(conn.get(), 0, 0, false, In(10000 * Slowdown()));
    seen_count = in.received;
    seen_digest = in.recv_digest;
  });
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  Fd c = Connect();
  ASSERT_TRUE(c);
  std::string got;
  ASSERT_EQ(RecvToEof(c.get(), &got, In(5000 * Slowdown())), 0) << "no EOF from the server";
  EXPECT_EQ(got, "");
  Deadline deadline = In(10000 * Slowdown());
  std::string data = Pattern(5).Bytes(0, kSize);
  ASSERT_EQ(SendAll(c.get(), data, deadline), 0);
  shutdown(c.get(), SHUT_WR);
  // The forwarder closes the client once both directions are done.
  std::string rest;
  EXPECT_EQ(RecvToEof(c.get(), &rest, deadline), 0);
  server.CloseListener();
  for (Deadline d2 = In(5000 * Slowdown()); seen_count.load() < kSize && Clock::now() < d2;)
    std::this_thread::yield();
  EXPECT_EQ(seen_count.load(), kSize);
  EXPECT_EQ(seen_digest.load(), DigestOf(data));
}

// The server resets the connection (SO_LINGER 0 close): the client's read
// fails with ECONNRESET rather than seeing a clean EOF.
TEST_F(TcpTest, ServerResetReachesClient) {
  TcpServer server(TcpListen(*target_, Back()), [](Fd conn) {
    std::string req;
    if (RecvExact(conn.get(), 5, &req, In(5000 * Slowdown())) != 0) return;
    linger lg{1, 0};
    setsockopt(conn.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  });
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  Fd c = Connect();
  ASSERT_TRUE(c);
  ASSERT_EQ(SendAll(c.get(), "hello", In(2000)), 0);
  std::string got;
  int err = RecvToEof(c.get(), &got, In(5000 * Slowdown()));
  EXPECT_EQ(err, ECONNRESET) << "got " << (err ? std::strerror(err) : "a clean EOF");
  EXPECT_EQ(got, "");
}

// Closes `c` with a reset (SO_LINGER 0).
void ResetNow(Fd* c) {
  linger lg{1, 0};
  setsockopt(c->get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  c->Reset();
}

// The server's read (`server_err`: -1 until it returns) ends in ECONNRESET.
void ExpectResetSeen(const std::atomic<int>& server_err) {
  for (Deadline dl = In(6000 * Slowdown()); server_err.load() == -1 && Clock::now() < dl;)
    std::this_thread::yield();
  EXPECT_EQ(server_err.load(), ECONNRESET)
      << "got " << (server_err.load() > 0 ? std::strerror(server_err.load()) : "a clean EOF");
}

// The client resets: the server's read fails with ECONNRESET.
TEST_F(TcpTest, ClientResetReachesServer) {
  std::atomic<int> server_err{-1};
  TcpServer server(TcpListen(*target_, Back()), [&](Fd conn) {
    std::string got;
    server_err = RecvToEof(conn.get(), &got, In(5000 * Slowdown()));
  });
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  Fd c = Connect();
  ASSERT_TRUE(c);
  ASSERT_EQ(SendAll(c.get(), "hello", In(2000)), 0);
  for (Deadline dl = In(5000 * Slowdown()); server.accepted() == 0 && Clock::now() < dl;)
    std::this_thread::yield();
  ASSERT_EQ(server.accepted(), 1);
  ResetNow(&c);
  ExpectResetSeen(server_err);
}

// The client's last bytes and its reset reach the forwarder together (it is
// stopped while they arrive, so one wake-up reports both): the server reads
// the bytes, then the reset, as it would from the client directly; it is not
// left with a connection open.
TEST_F(TcpTest, ResetRightBehindDataReachesServer) {
  std::atomic<int> server_err{-1};
  std::string tail;  // written by the server before server_err
  TcpServer server(TcpListen(*target_, Back()), [&](Fd conn) {
    std::string got;
    if (RecvExact(conn.get(), 5, &got, In(5000 * Slowdown())) != 0) return;
    SendAll(conn.get(), got, In(2000));  // the flow is open both ways
    got.clear();
    int err = RecvToEof(conn.get(), &got, In(5000 * Slowdown()));
    tail = got;
    server_err = err;
  });
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  Fd c = Connect();
  ASSERT_TRUE(c);
  ASSERT_EQ(SendAll(c.get(), "hello", In(2000)), 0);
  std::string echo;
  ASSERT_EQ(RecvExact(c.get(), 5, &echo, In(5000 * Slowdown())), 0);
  ASSERT_EQ(kill(d->pid(), SIGSTOP), 0);
  int sent = SendAll(c.get(), "tail", In(2000));
  ResetNow(&c);
  poll(nullptr, 0, 50);                   // both in the forwarder's socket
  ASSERT_EQ(kill(d->pid(), SIGCONT), 0);  // before any failure can leave it stopped
  ASSERT_EQ(sent, 0);
  ExpectResetSeen(server_err);
  if (server_err.load() != -1) {
    EXPECT_EQ(tail, "tail");
  }
}

// Nothing listens on the target port: the client's connection is closed or
// reset promptly, with no data.
TEST_F(TcpTest, BackendNotListening) {
  auto d = StartForwarder({"-t", "8080:80"});
  ASSERT_TRUE(d);
  for (int i = 0; i < 3; ++i) {
    // The forwarder may reset the connection before connect() returns.
    Fd c = SocketIn(*host_, AF_INET, SOCK_STREAM);
    ASSERT_TRUE(c);
    int err = ConnectFd(c.get(), Front(), In(3000 * Slowdown()));
    if (err == ECONNRESET) continue;
    ASSERT_EQ(err, 0) << std::strerror(err);
    std::string got;
    err = RecvToEof(c.get(), &got, In(3000 * Slowdown()));
    EXPECT_TRUE(err == 0 || err == ECONNRESET) << std::strerror(err);
    EXPECT_EQ(got, "");
  }
  EXPECT_TRUE(d->Running());
}

}  // namespace
}  // namespace ringfwd::e2e
