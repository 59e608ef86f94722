// The pesto wire codec.
//
// Theory of operation: every decoder walks its input with a Reader that knows
// how many bytes are left. A field that is not complete yet means the input
// is a prefix of something that may still be valid: kNeedMore. A complete
// field with a value that cannot be right (wrong magic, a count past
// kMaxWireRules, a name without NUL) is kError at the offset where that field
// starts. Prefix checks are eager where they can be (a magic is compared byte
// by byte as it arrives), so garbage is refused as early as possible, and no
// vector is reserved before its count has been bounded and its bytes are all
// there.
#include "ctl/wire.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringfwd::wire {
namespace {

void PutU8(uint8_t v, Bytes* out) { out->push_back(v); }

void PutU16(uint16_t v, uint8_t* p) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

void PutU32(uint32_t v, Bytes* out) {
  out->push_back(static_cast<uint8_t>(v >> 24));
  out->push_back(static_cast<uint8_t>(v >> 16));
  out->push_back(static_cast<uint8_t>(v >> 8));
  out->push_back(static_cast<uint8_t>(v));
}

uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

uint32_t GetU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

void PutRules(const std::vector<Rule>& rules, Bytes* out) {
  size_t at = out->size();
  out->resize(at + rules.size() * kRuleSize);
  for (const Rule& r : rules) {
    EncodeRule(r, out->data() + at);
    at += kRuleSize;
  }
}

// A cursor over the input. Reads are only done after Has() said yes.
class Reader {
 public:
  explicit Reader(ByteSpan in) : in_(in) {}

  size_t pos() const { return pos_; }
  bool Has(size_t n) const { return in_.size() - pos_ >= n; }
  size_t Available() const { return in_.size() - pos_; }
  const uint8_t* Here() const { return in_.data() + pos_; }

  uint8_t U8() { return in_[pos_++]; }
  uint32_t U32() {
    uint32_t v = GetU32(Here());
    pos_ += 4;
    return v;
  }
  void Skip(size_t n) { pos_ += n; }

 private:
  ByteSpan in_;
  size_t pos_ = 0;
};

template <typename T>
Decoded<T> NeedMore() {
  return Decoded<T>{};
}

template <typename T>
Decoded<T> Error(size_t offset, const std::string& what) {
  Decoded<T> d;
  d.state = DecodeState::kError;
  d.error_offset = offset;
  d.error = absl::StrCat("offset ", offset, ": ", what);
  return d;
}

template <typename T>
Decoded<T> Ok(T value, size_t consumed) {
  Decoded<T> d;
  d.state = DecodeState::kOk;
  d.value = std::move(value);
  d.consumed = consumed;
  return d;
}

// Compares the available prefix of an 8-byte magic. Returns kOk when all 8
// bytes are there and match, kNeedMore for a matching prefix, kError (with
// the offset of the first wrong byte in *bad) otherwise.
DecodeState CheckMagic(const Reader& r, const char (&magic)[8], size_t* bad) {
  size_t n = std::min<size_t>(r.Available(), 8);
  for (size_t i = 0; i < n; i++) {
    if (r.Here()[i] != static_cast<uint8_t>(magic[i])) {
      *bad = r.pos() + i;
      return DecodeState::kError;
    }
  }
  return n == 8 ? DecodeState::kOk : DecodeState::kNeedMore;
}

std::string MagicText(const char (&magic)[8]) { return std::string(magic, 7) + "\\0"; }

// The error for a count past kMaxWireRules ("rule count 4294967295 exceeds
// 1024"), or an empty string when the count is fine.
std::string CountError(const char* what, uint32_t count) {
  if (count <= kMaxWireRules) return "";
  return absl::StrCat(what, " ", count, " exceeds ", kMaxWireRules);
}

// Decodes `count` rules at the reader, which must hold them all.
std::vector<Rule> ReadRules(Reader* r, uint32_t count) {
  std::vector<Rule> rules;
  rules.reserve(count);  // count <= kMaxWireRules, bytes present: checked by callers
  for (uint32_t i = 0; i < count; i++) {
    rules.push_back(DecodeRule(r->Here()));
    r->Skip(kRuleSize);
  }
  return rules;
}

}  // namespace

const char* StatusCodeName(StatusCode c) {
  switch (c) {
    case StatusCode::kApplied:
      return "APPLIED";
    case StatusCode::kRejected:
      return "REJECTED";
    case StatusCode::kApplyFailed:
      return "APPLY_FAILED";
    case StatusCode::kRollbackFailed:
      return "ROLLBACK_FAILED";
    case StatusCode::kProtocolError:
      return "PROTOCOL_ERROR";
  }
  return "UNKNOWN";
}

void EncodeRule(const Rule& r, uint8_t* out) {
  std::memcpy(out, r.addr.b.data(), 16);
  std::memcpy(out + 16, r.target.b.data(), 16);
  std::memcpy(out + 32, r.ifname.data(), kIfNameSize);
  PutU16(r.first, out + 48);
  PutU16(r.last, out + 50);
  PutU16(r.to, out + 52);
  out[54] = r.proto;
  out[55] = r.flags;
}

Rule DecodeRule(const uint8_t* in) {
  Rule r;
  std::memcpy(r.addr.b.data(), in, 16);
  std::memcpy(r.target.b.data(), in + 16, 16);
  std::memcpy(r.ifname.data(), in + 32, kIfNameSize);
  r.first = GetU16(in + 48);
  r.last = GetU16(in + 50);
  r.to = GetU16(in + 52);
  r.proto = in[54];
  r.flags = in[55];
  return r;
}

void EncodeHello(const Hello& h, Bytes* out) {
  out->insert(out->end(), kServerMagic, kServerMagic + 8);
  PutU32(h.version, out);
  PutU32(h.pif_name_size, out);
  PutU32(h.ifnamsiz, out);
}

Decoded<Hello> DecodeHello(ByteSpan in) {
  Reader r(in);
  size_t bad = 0;
  switch (CheckMagic(r, kServerMagic, &bad)) {
    case DecodeState::kError:
      return Error<Hello>(bad, absl::StrCat("bad server magic (expected \"",
                                            MagicText(kServerMagic), "\"): not a pesto server"));
    case DecodeState::kNeedMore:
      return NeedMore<Hello>();
    case DecodeState::kOk:
      break;
  }
  r.Skip(8);
  struct Field {
    const char* name;
    uint32_t want;
  };
  const Field fields[] = {
      {"protocol version", kVersion},
      {"pif name size", kPifNameSize},
      {"interface name size", kIfNamSiz},
  };
  uint32_t got[3] = {};
  for (int i = 0; i < 3; i++) {
    if (!r.Has(4)) return NeedMore<Hello>();
    size_t at = r.pos();
    got[i] = r.U32();
    if (got[i] != fields[i].want) {
      return Error<Hello>(at, absl::StrCat(fields[i].name, " ", got[i], " is not ", fields[i].want,
                                           " (unsupported)"));
    }
  }
  Hello h;
  h.version = got[0];
  h.pif_name_size = got[1];
  h.ifnamsiz = got[2];
  return Ok(h, r.pos());
}

void EncodeListing(const TableSet& set, Bytes* out) {
  for (const Table& t : set.tables) {
    PutU8(static_cast<uint8_t>(t.pif), out);
    size_t at = out->size();
    out->resize(at + kPifNameSize, 0);
    // Keep at least one NUL: a name is at most kPifNameSize - 1 bytes.
    std::memcpy(out->data() + at, t.name.data(), std::min<size_t>(t.name.size(), kPifNameSize - 1));
    PutU32(t.caps, out);
    PutU32(static_cast<uint32_t>(t.rules.size()), out);
    PutRules(t.rules, out);
  }
  PutU8(0, out);
}

Decoded<TableSet> DecodeListing(ByteSpan in) {
  Reader r(in);
  TableSet set;
  int last_pif = 0;
  for (;;) {
    if (!r.Has(1)) return NeedMore<TableSet>();
    size_t pif_at = r.pos();
    uint8_t pif = r.U8();
    if (pif == 0) break;
    if (pif <= last_pif) {
      return Error<TableSet>(pif_at, absl::StrCat("pif ", pif, " after pif ", last_pif,
                                                  ": pifs must be in increasing order"));
    }
    last_pif = pif;

    size_t name_at = r.pos();
    size_t name_len =
        std::find(r.Here(), r.Here() + std::min<size_t>(r.Available(), kPifNameSize), uint8_t{0}) -
        r.Here();
    if (name_len == kPifNameSize) {
      return Error<TableSet>(
          name_at,
          absl::StrCat("name of pif ", pif, " is not NUL-terminated in ", kPifNameSize, " bytes"));
    }
    if (!r.Has(kPifNameSize)) return NeedMore<TableSet>();
    Table t;
    t.pif = static_cast<PifId>(pif);
    t.name.assign(reinterpret_cast<const char*>(r.Here()), name_len);
    r.Skip(kPifNameSize);

    if (!r.Has(4)) return NeedMore<TableSet>();
    t.caps = r.U32();
    if (!r.Has(4)) return NeedMore<TableSet>();
    size_t count_at = r.pos();
    uint32_t count = r.U32();
    if (std::string e = CountError("rule count", count); !e.empty())
      return Error<TableSet>(count_at, absl::StrCat(e, " (pif ", t.name, ")"));
    if (!r.Has(size_t{count} * kRuleSize)) return NeedMore<TableSet>();
    t.rules = ReadRules(&r, count);
    set.tables.push_back(std::move(t));
  }
  return Ok(std::move(set), r.pos());
}

void EncodeUpdate(const Update& u, Bytes* out) {
  if (u.transactional) out->insert(out->end(), kClientMagic, kClientMagic + 8);
  for (const UpdateBlock& b : u.blocks) {
    PutU8(b.pif, out);
    PutU32(static_cast<uint32_t>(b.rules.size()), out);
    PutRules(b.rules, out);
  }
  PutU8(0, out);
}

void EncodeUpdateFromTables(const TableSet& set, bool transactional, Bytes* out) {
  if (transactional) out->insert(out->end(), kClientMagic, kClientMagic + 8);
  for (const Table& t : set.tables) {
    PutU8(static_cast<uint8_t>(t.pif), out);
    PutU32(static_cast<uint32_t>(t.rules.size()), out);
    PutRules(t.rules, out);
  }
  PutU8(0, out);
}

Decoded<Update> DecodeUpdate(ByteSpan in) {
  Reader r(in);
  Update u;
  if (!r.Has(1)) return NeedMore<Update>();
  if (r.Here()[0] == static_cast<uint8_t>(kClientMagic[0])) {
    size_t bad = 0;
    switch (CheckMagic(r, kClientMagic, &bad)) {
      case DecodeState::kError:
        return Error<Update>(
            bad, absl::StrCat("bad client magic (expected \"", MagicText(kClientMagic), "\")"));
      case DecodeState::kNeedMore:
        return NeedMore<Update>();
      case DecodeState::kOk:
        break;
    }
    r.Skip(8);
    u.transactional = true;
  }
  for (;;) {
    if (!r.Has(1)) return NeedMore<Update>();
    uint8_t pif = r.U8();
    if (pif == 0) break;
    if (!r.Has(4)) return NeedMore<Update>();
    size_t count_at = r.pos();
    uint32_t count = r.U32();
    if (std::string e = CountError("rule count", count); !e.empty())
      return Error<Update>(count_at, e);
    if (!r.Has(size_t{count} * kRuleSize)) return NeedMore<Update>();
    UpdateBlock b;
    b.pif = pif;
    b.rules = ReadRules(&r, count);
    u.blocks.push_back(std::move(b));
  }
  return Ok(std::move(u), r.pos());
}

void EncodeStatus(const StatusReply& s, Bytes* out) {
  PutU8(static_cast<uint8_t>(s.code), out);
  // A longer message is cut at kMaxStatusMessage, on a UTF-8 character boundary.
  size_t len = s.message.size();
  if (len > kMaxStatusMessage) {
    len = kMaxStatusMessage;
    while (len > 0 && (static_cast<uint8_t>(s.message[len]) & 0xc0) == 0x80) len--;
  }
  PutU32(static_cast<uint32_t>(len), out);
  out->insert(out->end(), s.message.begin(), s.message.begin() + len);
  for (const PifReport& p : s.report) {
    PutU8(p.pif, out);
    PutU32(static_cast<uint32_t>(p.rules.size()), out);
    for (const RuleReport& rr : p.rules) {
      PutU32(rr.bound, out);
      PutU32(rr.failed, out);
      PutU32(static_cast<uint32_t>(rr.first_errno), out);
    }
  }
  PutU8(0, out);
}

Decoded<StatusReply> DecodeStatus(ByteSpan in) {
  constexpr size_t kReportRuleSize = 12;
  Reader r(in);
  StatusReply s;
  if (!r.Has(1)) return NeedMore<StatusReply>();
  uint8_t code = r.U8();
  if (code > static_cast<uint8_t>(StatusCode::kProtocolError))
    return Error<StatusReply>(0, absl::StrCat("unknown status code ", code));
  s.code = static_cast<StatusCode>(code);
  if (!r.Has(4)) return NeedMore<StatusReply>();
  uint32_t len = r.U32();
  if (len > kMaxStatusMessage) {
    return Error<StatusReply>(
        1, absl::StrCat("status message length ", len, " exceeds ", kMaxStatusMessage));
  }
  if (!r.Has(len)) return NeedMore<StatusReply>();
  s.message.assign(reinterpret_cast<const char*>(r.Here()), len);
  r.Skip(len);
  for (;;) {
    if (!r.Has(1)) return NeedMore<StatusReply>();
    uint8_t pif = r.U8();
    if (pif == 0) break;
    if (!r.Has(4)) return NeedMore<StatusReply>();
    size_t count_at = r.pos();
    uint32_t count = r.U32();
    if (std::string e = CountError("report count", count); !e.empty())
      return Error<StatusReply>(count_at, e);
    if (!r.Has(size_t{count} * kReportRuleSize)) return NeedMore<StatusReply>();
    PifReport p;
    p.pif = pif;
    p.rules.reserve(count);
    for (uint32_t i = 0; i < count; i++) {
      RuleReport rr;
      rr.bound = r.U32();
      rr.failed = r.U32();
      rr.first_errno = static_cast<int32_t>(r.U32());
      p.rules.push_back(rr);
    }
    s.report.push_back(std::move(p));
  }
  return Ok(std::move(s), r.pos());
}

}  // namespace ringfwd::wire
