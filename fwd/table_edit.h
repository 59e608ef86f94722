// The table edits of the pesto client, applied in command-line order
// (PROTOCOL.md, "The pesto client's table edits").
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "fwd/port_spec.h"
#include "fwd/rule.h"

namespace ringfwd {

// One command-line item, in order: a spec option (-t/-u/-T/-U with its
// argument), a mode switch (-A, -D) or a clear (-C PIF).
struct EditArg {
  char opt = 0;       // 't', 'u', 'T', 'U', 'A', 'D' or 'C'
  std::string value;  // the spec for t/u/T/U, the pif name ("HOST", "SPLICE") for C
};

// Applies `args` to `set` (the tables read from the server):
// - without -A/-D, the first -t/-u of the command line replaces the HOST
//   table and the first -T/-U the SPLICE table; later ones add to it;
// - after -A, specs add to the current table; after -D, they delete rules
//   that match exactly (a rule that is not there is an error);
// - -C PIF clears that pif's table.
// Each step is applied before the next is parsed, so "-D -u 10000-10049 -A -u
// 10000-10010" works. The result is validated per table (ValidateTable).
// On error `set` is unchanged and the status names the argument.
absl::Status ApplyEdits(const std::vector<EditArg>& args, PortRange ephemeral, TableSet* set);

// True if any arg changes tables (so the client sends an update).
bool EditsChangeTables(const std::vector<EditArg>& args);

}  // namespace ringfwd
