#include "uring/qemu_stream.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ringfwd {
namespace {

struct Collector : FrameReceiver {
  std::vector<std::string> frames;
  void OnFrames(std::span<const std::span<const uint8_t>> fs, std::span<const uint8_t>) override {
    for (auto f : fs) frames.emplace_back(reinterpret_cast<const char*>(f.data()), f.size());
  }
};

std::string Prefixed(const std::string& frame) {
  uint8_t p[4];
  EncodeFramePrefix(frame.size(), p);
  return std::string(reinterpret_cast<char*>(p), 4) + frame;
}

class QemuStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat("/tmp/rf-qemu-test-", getpid(), ".sock");
    absl::StatusOr<Fd> l = QemuStream::Listen(path_);
    ASSERT_TRUE(l.ok()) << l.status();
    auto r = Ring::Create(64);
    ASSERT_TRUE(r.ok());
    ring_ = std::move(*r);
    src_ = std::make_unique<QemuStream>(ring_.get(), std::move(*l), path_, &rx_, 1500,
                                        FrameSourceKinds{16, 17, 18});
    src_->Start();
  }

  Fd Connect() {
    Fd c(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path_.c_str(), sizeof(sun.sun_path) - 1);
    EXPECT_EQ(connect(c.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0);
    timeval tv{2, 0};
    setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return c;
  }

  // Runs the ring until `done` (bounded in time and rounds).
  void Pump(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    for (int i = 0; i < 2000 && !done() && std::chrono::steady_clock::now() < deadline; i++) {
      ring_->RunOnce(20, [&](const io_uring_cqe& cqe) {
        src_->HandleCompletion(cqe, UserData::Unpack(cqe.user_data));
      });
      src_->DeliverReceived();
      src_->Flush();
    }
  }

  std::string path_;
  std::unique_ptr<Ring> ring_;
  Collector rx_;
  std::unique_ptr<QemuStream> src_;
};

TEST_F(QemuStreamTest, CarriesFramesBothWaysAcrossArbitrarySplits) {
  Fd c = Connect();
  Pump([&] { return src_->Connected(); });
  ASSERT_TRUE(src_->Connected());
  std::string f1(60, 'a'), f2(1514, 'b'), f3(14, 'c');
  std::string stream = Prefixed(f1) + Prefixed(f2) + Prefixed(f3);
  // Half a frame first: nothing is delivered, the rest completes it.
  ASSERT_EQ(send(c.get(), stream.data(), 40, 0), 40);
  Pump([&] { return src_->pending_in() == 40; });
  EXPECT_TRUE(rx_.frames.empty());
  for (size_t pos = 40; pos < stream.size(); pos += 7) {
    size_t n = std::min<size_t>(7, stream.size() - pos);
    ASSERT_EQ(send(c.get(), stream.data() + pos, n, 0), static_cast<ssize_t>(n));
  }
  Pump([&] { return rx_.frames.size() == 3; });
  ASSERT_EQ(rx_.frames.size(), 3u);
  EXPECT_EQ(rx_.frames[0], f1);
  EXPECT_EQ(rx_.frames[1], f2);
  EXPECT_EQ(rx_.frames[2], f3);

  // Out: many frames queued and flushed together arrive prefixed, in order.
  std::string want;
  for (int i = 0; i < 100; i++) {
    std::span<uint8_t> b = src_->Reserve(1514);
    ASSERT_EQ(b.size(), 1514u);
    size_t len = 14 + i * 10;
    std::memset(b.data(), 'A' + i % 26, len);
    src_->Commit(len);
    want += Prefixed(std::string(len, 'A' + i % 26));
  }
  EXPECT_TRUE(src_->Reserve(1515).empty()) << "larger than MTU + header";
  src_->Flush();
  std::string got;
  Pump([&] {
    char buf[65536];
    ssize_t n = recv(c.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) got.append(buf, n);
    return got.size() >= want.size();
  });
  EXPECT_EQ(got, want);
}

TEST_F(QemuStreamTest, RefusesASecondClient) {
  Fd c1 = Connect();
  Pump([&] { return src_->Connected(); });
  Fd c2 = Connect();
  Pump([&] { return src_->stats().clients_refused == 1; });
  EXPECT_EQ(src_->stats().clients_refused, 1u);
  char b;
  EXPECT_EQ(recv(c2.get(), &b, 1, 0), 0) << "the second client sees EOF";
  // The first one still works.
  std::string f(20, 'x');
  std::string p = Prefixed(f);
  ASSERT_EQ(send(c1.get(), p.data(), p.size(), 0), static_cast<ssize_t>(p.size()));
  Pump([&] { return rx_.frames.size() == 1; });
  ASSERT_EQ(rx_.frames.size(), 1u);
  EXPECT_EQ(rx_.frames[0], f);
}

TEST_F(QemuStreamTest, BadLengthDropsTheClientAndANewOneIsServed) {
  for (uint32_t bad : {13u, 65536u}) {
    Fd c = Connect();
    Pump([&] { return src_->Connected(); });
    ASSERT_TRUE(src_->Connected());
    uint8_t p[4];
    EncodeFramePrefix(bad, p);
    std::string s = Prefixed(std::string(30, 'o')) + std::string(reinterpret_cast<char*>(p), 4) +
                    std::string(100, 'z');
    ASSERT_EQ(send(c.get(), s.data(), s.size(), 0), static_cast<ssize_t>(s.size()));
    Pump([&] { return !src_->Connected(); });
    EXPECT_FALSE(src_->Connected()) << bad;
    char b;
    EXPECT_EQ(recv(c.get(), &b, 1, 0), 0) << "dropped client sees EOF";
  }
  EXPECT_EQ(rx_.frames.size(), 2u) << "the good frames before each bad length";
  EXPECT_EQ(src_->stats().clients_dropped, 2u);
  Fd c = Connect();
  std::string f(64, 'n');
  std::string p = Prefixed(f);
  ASSERT_EQ(send(c.get(), p.data(), p.size(), 0), static_cast<ssize_t>(p.size()));
  Pump([&] { return rx_.frames.size() == 3; });
  ASSERT_EQ(rx_.frames.size(), 3u);
  EXPECT_EQ(rx_.frames[2], f);
}

}  // namespace
}  // namespace ringfwd
