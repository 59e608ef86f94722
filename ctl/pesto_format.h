// What the pesto client prints: tables in the text form of the passt
// project's pesto (interop/pesto_list.txt), the status of a transactional
// update with its per-rule report, and the same as JSON for --json.
#pragma once

#include <string>

#include "ctl/wire.h"
#include "fwd/rule.h"

namespace ringfwd::ctl {

// "<header>\n", then per table "  NAME\n" and per rule "    RULE_TEXT\n":
//   Configuration (ctl.sock)
//     HOST
//       TCP [*]:15201  =>  15201
std::string FormatTables(const std::string& header, const TableSet& set);

// The status of a transactional update, for people:
//   "Update REJECTED: <message>\n" (or "Update APPLIED\n" with no message),
// then, when the reply has a report, per pif "  NAME\n" and per rule
//   "    RULE_TEXT: 3 ports bound, 1 failed (Address already in use)\n".
// Rules are named from `sent` (the tables of the update, in the order sent);
// a report entry without a matching rule is shown by its index.
std::string FormatStatus(const wire::StatusReply& status, const TableSet& sent);

// `s` as a JSON string literal, quotes included; control characters, '"' and
// '\\' escaped, other bytes as they are.
std::string JsonString(const std::string& s);

// A JSON array of the tables: each pif with id, name, caps and rules, each
// rule with every wire field, its flags spelled out, and its text form.
std::string TablesJson(const TableSet& set);

// A JSON object for a status reply: code, name, message and the report (each
// rule's counts, errno and its strerror text).
std::string StatusJson(const wire::StatusReply& status);

}  // namespace ringfwd::ctl
