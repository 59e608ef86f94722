// The pesto client's table edits (PROTOCOL.md, "The pesto client's table
// edits").
//
// Theory of operation: the edits run on a copy of the tables, one argument
// at a time, in a mode that -A and -D switch:
// - replace (the start): the first spec for a pif replaces its table, the
//   following ones for that pif add to it;
// - add (after -A): specs add to the current table;
// - delete (after -D): specs remove rules that match exactly.
// -C clears a table in any mode. Each added rule remembers the argument it
// came from, so that when the edited tables are validated at the end, a
// rejected rule is blamed on its argument. Only then is the copy swapped in:
// on any error the caller's tables are untouched.
#include "fwd/table_edit.h"

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ringfwd {
namespace {

// "-t 80", as the argument was written.
std::string ArgText(const EditArg& a) {
  if (a.opt == 'A' || a.opt == 'D') return absl::StrCat("-", std::string(1, a.opt));
  return absl::StrCat("-", std::string(1, a.opt), " ", a.value);
}

absl::Status ArgError(const EditArg& a, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(ArgText(a), ": ", msg));
}

// The pif named by -C: "HOST", "SPLICE", "TAP" (any case), the name of a
// table as read from the server, or a decimal id.
std::optional<PifId> ParsePif(absl::string_view name, const TableSet& set) {
  for (PifId p : {PifId::kHost, PifId::kTap, PifId::kSplice})
    if (absl::EqualsIgnoreCase(name, PifName(p))) return p;
  for (const Table& t : set.tables)
    if (!t.name.empty() && absl::EqualsIgnoreCase(name, t.name)) return t.pif;
  uint32_t id;
  if (absl::SimpleAtoi(name, &id) && id > 0 && id < 256) return static_cast<PifId>(id);
  return std::nullopt;
}

// A table being edited, with the argument each rule came from (-1: it was
// read from the server).
struct Work {
  Table* table;
  std::vector<int> origin;
};

}  // namespace

absl::Status ApplyEdits(const std::vector<EditArg>& args, PortRange ephemeral, TableSet* set) {
  TableSet next = *set;
  std::vector<Work> work;
  for (Table& t : next.tables) work.push_back({&t, std::vector<int>(t.rules.size(), -1)});
  auto find = [&](PifId pif) -> Work* {
    for (Work& w : work)
      if (w.table->pif == pif) return &w;
    return nullptr;
  };

  enum class Mode { kReplace, kAdd, kDelete } mode = Mode::kReplace;
  std::vector<PifId> replaced;  // pifs whose table a spec already replaced
  std::vector<PifId> touched;   // pifs to validate at the end
  for (size_t i = 0; i < args.size(); i++) {
    const EditArg& a = args[i];
    switch (a.opt) {
      case 'A':
        mode = Mode::kAdd;
        continue;
      case 'D':
        mode = Mode::kDelete;
        continue;
      case 'C': {
        std::optional<PifId> pif = ParsePif(a.value, next);
        if (!pif) return ArgError(a, absl::StrCat("unknown pif '", a.value, "'"));
        Work* w = find(*pif);
        if (!w) return ArgError(a, absl::StrCat("the server has no ", PifName(*pif), " table"));
        w->table->rules.clear();
        w->origin.clear();
        continue;
      }
      case 't':
      case 'u':
      case 'T':
      case 'U':
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unknown edit option '-", std::string(1, a.opt), "'"));
    }
    PortSpecOptions opts;
    opts.pif = (a.opt == 't' || a.opt == 'u') ? PifId::kHost : PifId::kSplice;
    opts.proto = (a.opt == 't' || a.opt == 'T') ? kProtoTcp : kProtoUdp;
    opts.ephemeral = ephemeral;
    absl::StatusOr<std::vector<Rule>> rules = ParsePortSpec(a.value, opts);
    if (!rules.ok()) return ArgError(a, rules.status().message());
    Work* w = find(opts.pif);
    if (!w) return ArgError(a, absl::StrCat("the server has no ", PifName(opts.pif), " table"));
    if (std::find(touched.begin(), touched.end(), opts.pif) == touched.end())
      touched.push_back(opts.pif);
    std::vector<Rule>& table = w->table->rules;
    if (mode == Mode::kDelete) {
      for (const Rule& r : *rules) {
        auto it = std::find(table.begin(), table.end(), r);
        if (it == table.end())
          return ArgError(a, absl::StrCat("rule ", RuleText(r), " is not in the ",
                                          PifName(opts.pif), " table"));
        w->origin.erase(w->origin.begin() + (it - table.begin()));
        table.erase(it);
      }
      continue;
    }
    if (mode == Mode::kReplace &&
        std::find(replaced.begin(), replaced.end(), opts.pif) == replaced.end()) {
      replaced.push_back(opts.pif);
      table.clear();
      w->origin.clear();
    }
    table.insert(table.end(), rules->begin(), rules->end());
    w->origin.insert(w->origin.end(), rules->size(), static_cast<int>(i));
  }

  for (PifId pif : touched) {
    const Work& w = *find(pif);
    absl::Status s = ValidateTable(*w.table);
    if (s.ok()) continue;
    // Blame the argument of the rule at fault: the invalid one, or the later
    // of two overlapping ones.
    const std::vector<Rule>& rules = w.table->rules;
    int culprit = -1;
    for (size_t i = 0; i < rules.size() && culprit < 0; i++)
      if (!ValidateRule(rules[i], w.table->caps).ok()) culprit = w.origin[i];
    for (size_t i = 1; i < rules.size() && culprit < 0; i++) {
      for (size_t j = 0; j < i && culprit < 0; j++)
        if (RulesOverlap(rules[i], rules[j])) culprit = std::max(w.origin[i], w.origin[j]);
    }
    if (culprit < 0) return s;
    return ArgError(args[culprit], s.message());
  }
  *set = std::move(next);
  return absl::OkStatus();
}

bool EditsChangeTables(const std::vector<EditArg>& args) {
  return std::any_of(args.begin(), args.end(), [](const EditArg& a) {
    return a.opt == 't' || a.opt == 'u' || a.opt == 'T' || a.opt == 'U' || a.opt == 'C';
  });
}

}  // namespace ringfwd
