// A scripted control-socket server for client tests: a UNIX socket in a
// fresh temp dir, and a thread that accepts one connection and runs a
// handler on it. Every wait is bounded, so a client that never comes or never
// closes fails the test instead of hanging it.
#pragma once

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "ctl/wire.h"
#include "gtest/gtest.h"
#include "uring/fd.h"

namespace ringfwd::testing {

// Writes all of `bytes` to `fd` (no SIGPIPE); false if the peer went away.
inline bool SendAll(int fd, const std::vector<uint8_t>& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads from `fd` into *out until EOF, an error, `stop` says the bytes so far
// are enough, or `timeout_ms` of silence. Returns true on EOF or `stop`.
inline bool ReadUntil(int fd, std::vector<uint8_t>* out, int timeout_ms,
                      const std::function<bool(const std::vector<uint8_t>&)>& stop = nullptr) {
  uint8_t chunk[4096];
  for (;;) {
    if (stop && stop(*out)) return true;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n == 0) return true;
    if (n < 0) return false;
    out->insert(out->end(), chunk, chunk + n);
  }
}

class FakeServer {
 public:
  // Runs `handler` on the one accepted connection (in a thread). The
  // connection is closed when the handler returns. The temp dir and all in
  // it are removed when the server is destroyed.
  using Handler = std::function<void(int fd)>;

  explicit FakeServer(Handler handler) {
    char tmpl[] = "/tmp/ringfwd_ctl_test.XXXXXX";
    const char* d = mkdtemp(tmpl);
    EXPECT_NE(d, nullptr) << "mkdtemp: " << std::strerror(errno);
    dir_ = d ? d : "/tmp";
    path_ = dir_ + "/ctl.sock";
    listener_.Reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << "bind " << path_ << ": " << std::strerror(errno);
    EXPECT_EQ(listen(listener_.get(), 4), 0);
    thread_ = std::thread([this, handler = std::move(handler)] {
      pollfd p{listener_.get(), POLLIN, 0};
      if (poll(&p, 1, 10000) != 1) return;  // nobody came: nothing to serve
      Fd conn(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) return;
      accepted_ = true;
      handler(conn.get());
    });
  }

  ~FakeServer() {
    Join();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Waits for the handler to finish.
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }
  // True once a client was accepted (read after Join()).
  bool accepted() const { return accepted_; }

 private:
  std::string dir_;
  std::string path_;
  Fd listener_;
  std::thread thread_;
  bool accepted_ = false;
};

// A handler that sends `greeting` (hello and listing), then stores in
// *received everything the client sends until it closes.
inline FakeServer::Handler SendThenRecord(std::vector<uint8_t> greeting,
                                          std::vector<uint8_t>* received) {
  return [greeting = std::move(greeting), received](int fd) {
    SendAll(fd, greeting);
    EXPECT_TRUE(ReadUntil(fd, received, 10000)) << "client neither closed nor finished";
  };
}

}  // namespace ringfwd::testing
