#include "ctl/pesto_format.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ringfwd::ctl {
namespace {

std::string NameOf(const Table& t) { return t.name.empty() ? PifName(t.pif) : t.name; }

const Table* FindByWireId(const TableSet& set, uint8_t pif) {
  for (const Table& t : set.tables)
    if (static_cast<uint8_t>(t.pif) == pif) return &t;
  return nullptr;
}

std::string ProtoJson(uint8_t proto) {
  if (proto == kProtoTcp) return "\"TCP\"";
  if (proto == kProtoUdp) return "\"UDP\"";
  return absl::StrCat(proto);
}

const char* Bool(bool b) { return b ? "true" : "false"; }

std::string RuleJson(const Rule& r) {
  std::string ifname(r.ifname_view());
  return absl::StrCat("{\"proto\": ", ProtoJson(r.proto),
                      ", \"addr\": ", JsonString(r.addr.ToString()),
                      ", \"target\": ", JsonString(r.target.ToString()),
                      ", \"ifname\": ", JsonString(ifname), ", \"first\": ", r.first,
                      ", \"last\": ", r.last, ", \"to\": ", r.to, ", \"flags\": ", r.flags,
                      ", \"dual_stack\": ", Bool(r.dual_stack()), ", \"weak\": ", Bool(r.weak()),
                      ", \"scan\": ", Bool(r.scan()), ", \"text\": ", JsonString(RuleText(r)), "}");
}

}  // namespace

std::string FormatTables(const std::string& header, const TableSet& set) {
  std::string out = absl::StrCat(header, "\n");
  for (const Table& t : set.tables) {
    absl::StrAppend(&out, "  ", NameOf(t), "\n");
    for (const Rule& r : t.rules) absl::StrAppend(&out, "    ", RuleText(r), "\n");
  }
  return out;
}

std::string FormatStatus(const wire::StatusReply& status, const TableSet& sent) {
  std::string out = absl::StrCat("Update ", wire::StatusCodeName(status.code));
  if (!status.message.empty()) absl::StrAppend(&out, ": ", status.message);
  absl::StrAppend(&out, "\n");
  for (const wire::PifReport& p : status.report) {
    const Table* t = FindByWireId(sent, p.pif);
    absl::StrAppend(&out, "  ", t ? NameOf(*t) : PifName(static_cast<PifId>(p.pif)), "\n");
    for (size_t i = 0; i < p.rules.size(); i++) {
      const wire::RuleReport& rr = p.rules[i];
      std::string name =
          (t && i < t->rules.size()) ? RuleText(t->rules[i]) : absl::StrCat("rule ", i + 1);
      absl::StrAppend(&out, "    ", name, ": ", rr.bound, rr.bound == 1 ? " port" : " ports",
                      " bound, ", rr.failed, " failed");
      if (rr.first_errno != 0) absl::StrAppend(&out, " (", std::strerror(rr.first_errno), ")");
      absl::StrAppend(&out, "\n");
    }
  }
  return out;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      absl::StrAppendFormat(&out, "\\u%04x", u);
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string TablesJson(const TableSet& set) {
  std::string out = "[";
  for (size_t i = 0; i < set.tables.size(); i++) {
    const Table& t = set.tables[i];
    absl::StrAppend(&out, i ? ",\n  " : "\n  ", "{\"id\": ", static_cast<int>(t.pif),
                    ", \"name\": ", JsonString(NameOf(t)), ", \"caps\": ", t.caps,
                    ", \"transactional\": ", Bool(t.caps & kCapTxn), ", \"rules\": [");
    for (size_t j = 0; j < t.rules.size(); j++)
      absl::StrAppend(&out, j ? ",\n    " : "\n    ", RuleJson(t.rules[j]));
    absl::StrAppend(&out, t.rules.empty() ? "]}" : "\n  ]}");
  }
  absl::StrAppend(&out, set.tables.empty() ? "]" : "\n]");
  return out;
}

std::string StatusJson(const wire::StatusReply& status) {
  std::string out = absl::StrCat("{\"code\": ", static_cast<int>(status.code),
                                 ", \"name\": ", JsonString(wire::StatusCodeName(status.code)),
                                 ", \"message\": ", JsonString(status.message), ", \"report\": [");
  for (size_t i = 0; i < status.report.size(); i++) {
    const wire::PifReport& p = status.report[i];
    absl::StrAppend(&out, i ? ", " : "", "{\"pif\": ", static_cast<int>(p.pif), ", \"rules\": [");
    for (size_t j = 0; j < p.rules.size(); j++) {
      const wire::RuleReport& rr = p.rules[j];
      absl::StrAppend(&out, j ? ", " : "", "{\"bound\": ", rr.bound, ", \"failed\": ", rr.failed,
                      ", \"errno\": ", rr.first_errno, ", \"error\": ",
                      JsonString(rr.first_errno ? std::strerror(rr.first_errno) : ""), "}");
    }
    absl::StrAppend(&out, "]}");
  }
  absl::StrAppend(&out, "]}");
  return out;
}

}  // namespace ringfwd::ctl
