#include "uring/qemu_framing.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ringfwd {
namespace {

std::string Frame(size_t len, char fill) { return std::string(len, fill); }

std::string Encode(const std::vector<std::string>& frames) {
  std::string out;
  for (const std::string& f : frames) {
    uint8_t p[4];
    EncodeFramePrefix(f.size(), p);
    out.append(reinterpret_cast<char*>(p), 4);
    out += f;
  }
  return out;
}

// Feeds `stream` in pieces of `step` bytes (the last one shorter) and
// collects the frames.
std::vector<std::string> Decode(StreamDecoder& d, const std::string& stream, size_t step,
                                bool* ok) {
  std::vector<std::string> got;
  *ok = true;
  for (size_t pos = 0; pos < stream.size(); pos += step) {
    std::string piece = stream.substr(pos, step);
    auto span =
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(piece.data()), piece.size());
    if (!d.Feed(span, [&](std::span<const uint8_t> f) {
          got.emplace_back(reinterpret_cast<const char*>(f.data()), f.size());
        }))
      *ok = false;
  }
  return got;
}

TEST(QemuFraming, PrefixIsBigEndianLengthWithoutItself) {
  uint8_t p[4];
  EncodeFramePrefix(0x0102, p);
  EXPECT_EQ(p[0], 0);
  EXPECT_EQ(p[1], 0);
  EXPECT_EQ(p[2], 1);
  EXPECT_EQ(p[3], 2);
}

TEST(QemuFraming, DecodesAnyChunkingIdentically) {
  std::vector<std::string> frames = {Frame(14, 'a'), Frame(60, 'b'), Frame(1514, 'c'),
                                     Frame(65535, 'd'), Frame(100, 'e')};
  std::string stream = Encode(frames);
  for (size_t step : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{17}, size_t{4096},
                      size_t{70000}, stream.size()}) {
    StreamDecoder d;
    bool ok;
    std::vector<std::string> got = Decode(d, stream, step, &ok);
    EXPECT_TRUE(ok) << "step " << step;
    EXPECT_EQ(got, frames) << "step " << step;
    EXPECT_EQ(d.pending(), 0u);
  }
}

TEST(QemuFraming, KeepsAHalfFrameForTheNextChunk) {
  std::string stream = Encode({Frame(20, 'x'), Frame(30, 'y')});
  StreamDecoder d;
  bool ok;
  std::vector<std::string> got = Decode(d, stream.substr(0, 24 + 10), 1000, &ok);
  EXPECT_TRUE(ok);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(d.pending(), 10u);
  got = Decode(d, stream.substr(34), 1000, &ok);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], Frame(30, 'y'));
}

TEST(QemuFraming, CarriedFrameSurvivesANewPartialInTheSameChunk) {
  // Chunk 2 completes a carried frame and starts another partial one: the
  // first must still read correctly when the chunk's frames are handled.
  std::string stream = Encode({Frame(50, 'p'), Frame(50, 'q'), Frame(50, 'r')});
  StreamDecoder d;
  std::vector<std::span<const uint8_t>> spans;
  std::string c1 = stream.substr(0, 30), c2 = stream.substr(30, 80), c3 = stream.substr(110);
  auto feed = [&](const std::string& c) {
    spans.clear();
    d.Feed(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(c.data()), c.size()),
           [&](std::span<const uint8_t> f) { spans.push_back(f); });
  };
  feed(c1);
  EXPECT_TRUE(spans.empty());
  feed(c2);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(spans[0].data()), spans[0].size()),
            Frame(50, 'p'));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(spans[1].data()), spans[1].size()),
            Frame(50, 'q'));
  feed(c3);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(spans[0].data()), spans[0].size()),
            Frame(50, 'r'));
}

TEST(QemuFraming, RefusesLengthsOutOfRangeForGood) {
  for (uint32_t bad : {0u, 13u, 65536u, 0xffffffffu}) {
    std::string stream = Encode({Frame(20, 'g')});
    uint8_t p[4];
    EncodeFramePrefix(bad, p);
    stream.append(reinterpret_cast<char*>(p), 4);
    stream += Encode({Frame(20, 'h')});
    for (size_t step : {size_t{1}, stream.size()}) {
      StreamDecoder d;
      bool ok;
      std::vector<std::string> got = Decode(d, stream, step, &ok);
      EXPECT_FALSE(ok) << bad;
      EXPECT_TRUE(d.failed());
      EXPECT_EQ(d.bad_length(), bad);
      ASSERT_EQ(got.size(), 1u) << "frames before the bad length are delivered";
      EXPECT_EQ(got[0], Frame(20, 'g'));
      d.Reset();
      got = Decode(d, Encode({Frame(14, 'z')}), 3, &ok);
      EXPECT_TRUE(ok);
      EXPECT_EQ(got.size(), 1u) << "a reset decoder serves a new peer";
    }
  }
}

}  // namespace
}  // namespace ringfwd
