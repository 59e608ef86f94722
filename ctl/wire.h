// The pesto wire codec (PROTOCOL.md sections 1-6): pure functions from values
// to bytes and back, no I/O.
//
// Decoding is total: any byte sequence yields a value, "need more bytes"
// (the buffer holds a valid prefix), or an error naming the offset and what
// was wrong. Counts are bounded before anything is reserved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fwd/rule.h"

namespace ringfwd::wire {

inline constexpr char kServerMagic[8] = {'b', 'a', 's', 'i', 'l', ':', 's', '\0'};
inline constexpr char kClientMagic[8] = {'b', 'a', 's', 'i', 'l', ':', 'c', '\0'};
inline constexpr uint32_t kVersion = 2;
inline constexpr uint32_t kPifNameSize = 128;
inline constexpr uint32_t kIfNamSiz = 16;
inline constexpr size_t kHelloSize = 20;
inline constexpr size_t kRuleSize = 56;
// Counts above this are not a table but garbage: PROTOCOL_ERROR, not REJECTED.
inline constexpr uint32_t kMaxWireRules = 1024;
inline constexpr uint32_t kMaxStatusMessage = 4096;

enum class StatusCode : uint8_t {
  kApplied = 0,
  kRejected = 1,
  kApplyFailed = 2,
  kRollbackFailed = 3,
  kProtocolError = 4,
};
// "APPLIED", "REJECTED", ...
const char* StatusCodeName(StatusCode c);

struct Hello {
  uint32_t version = kVersion;
  uint32_t pif_name_size = kPifNameSize;
  uint32_t ifnamsiz = kIfNamSiz;
};

// One pif's block of an update: the pif id as sent (may be unknown) and rules.
struct UpdateBlock {
  uint8_t pif = 0;
  std::vector<Rule> rules;
  friend bool operator==(const UpdateBlock&, const UpdateBlock&) = default;
};

struct Update {
  bool transactional = false;  // started with the client magic
  std::vector<UpdateBlock> blocks;
  friend bool operator==(const Update&, const Update&) = default;
};

struct RuleReport {
  uint32_t bound = 0;
  uint32_t failed = 0;
  int32_t first_errno = 0;
  friend bool operator==(const RuleReport&, const RuleReport&) = default;
};

struct PifReport {
  uint8_t pif = 0;
  std::vector<RuleReport> rules;
  friend bool operator==(const PifReport&, const PifReport&) = default;
};

struct StatusReply {
  StatusCode code = StatusCode::kApplied;
  std::string message;
  std::vector<PifReport> report;
  friend bool operator==(const StatusReply&, const StatusReply&) = default;
};

enum class DecodeState { kOk, kNeedMore, kError };

// The outcome of decoding a prefix of a byte stream.
template <typename T>
struct Decoded {
  DecodeState state = DecodeState::kNeedMore;
  T value{};
  size_t consumed = 0;      // bytes used, when kOk
  size_t error_offset = 0;  // where the bytes went wrong, when kError
  std::string error;        // what was wrong, when kError ("offset 9: ...")
  bool ok() const { return state == DecodeState::kOk; }
};

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

// Rule: exactly kRuleSize bytes.
void EncodeRule(const Rule& r, uint8_t* out);
Rule DecodeRule(const uint8_t* in);

// Hello: magic, version, sizes. Decoding checks the magic, the version and
// the sizes (an error names which differs).
void EncodeHello(const Hello& h, Bytes* out);
Decoded<Hello> DecodeHello(ByteSpan in);

// Listing: each table (pif, name, caps, count, rules), then u8 0.
void EncodeListing(const TableSet& set, Bytes* out);
Decoded<TableSet> DecodeListing(ByteSpan in);

// Update: [client magic] then blocks (u8 pif, u32 count, rules) then u8 0.
// Decoding accepts both forms: a first byte of 'b' means the client magic.
void EncodeUpdate(const Update& u, Bytes* out);
Decoded<Update> DecodeUpdate(ByteSpan in);

// The update a pesto client sends after editing the tables it read: one block
// per table of `set` (changed or not), in order, then u8 0; preceded by the
// client magic when `transactional`.
void EncodeUpdateFromTables(const TableSet& set, bool transactional, Bytes* out);

// Status: code, u32 length, message, report blocks, u8 0 (report omitted
// entirely when empty, but the terminating u8 0 is always written).
void EncodeStatus(const StatusReply& s, Bytes* out);
Decoded<StatusReply> DecodeStatus(ByteSpan in);

}  // namespace ringfwd::wire
