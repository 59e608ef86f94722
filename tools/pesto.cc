// pesto: show or change the forwarding tables of a running forwarder through
// its control socket (PROTOCOL.md), byte-compatible with the passt project's
// pesto client.
//
//   pesto [OPTION]... PATH
//
// With no edit options it lists the tables and closes without sending. With
// edits it applies them in command-line order to the tables it read, and
// sends every pif back: as a version-2 update if any table lacks the TXN
// capability, else as a transactional update whose status it prints and
// returns as its exit code.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ctl/client.h"
#include "ctl/pesto_format.h"
#include "ctl/wire.h"
#include "fwd/port_spec.h"
#include "fwd/table_edit.h"

namespace ringfwd::pesto {
namespace {

// Exit codes: 0-4 are the status codes of a transactional update.
constexpr int kExitLocalError = 5;
constexpr const char* kVersionText = "pesto (ringfwd) 0.1, control protocol version 2";

constexpr const char* kUsage =
    "Usage: pesto [OPTION]... PATH\n"
    "Show or change the forwarding tables of the forwarder listening on the\n"
    "control socket PATH. With no edit options, list the tables only.\n"
    "\n"
    "  -t, --tcp-ports SPEC     TCP forwards on the HOST pif (inbound)\n"
    "  -u, --udp-ports SPEC     UDP forwards on the HOST pif (inbound)\n"
    "  -T, --tcp-ns SPEC        TCP forwards on the SPLICE pif (outbound)\n"
    "  -U, --udp-ns SPEC        UDP forwards on the SPLICE pif (outbound)\n"
    "                           Without -A/-D, the first -t/-u replaces the HOST\n"
    "                           table and the first -T/-U the SPLICE table; later\n"
    "                           ones add to it. SPEC: none, all, auto,\n"
    "                           [ADDR[%IF]/]PORTS[:TARGET], ~PORTS excludes.\n"
    "  -A, --add                following specs add to the current tables\n"
    "  -D, --delete             following specs delete rules matching exactly\n"
    "  -C, --clear PIF          clear the table of PIF (HOST, SPLICE)\n"
    "  -s, --show               show the tables before and after the change\n"
    "  -d, --debug              print protocol steps to standard error\n"
    "      --json               print tables (and the status) as JSON\n"
    "  -h, --help               display this help and exit\n"
    "      --version            display version information and exit\n"
    "\n"
    "Exit status: 0 success, 1 REJECTED, 2 APPLY_FAILED (rolled back),\n"
    "3 ROLLBACK_FAILED, 4 PROTOCOL_ERROR, 5 local error (bad specification,\n"
    "socket unreachable, not a pesto server or another protocol version).\n";

struct Options {
  std::vector<EditArg> edits;
  bool show = false;
  bool debug = false;
  bool json = false;
  std::string path;
};

enum LongOnly { kOptJson = 256, kOptVersion };

int LocalError(const std::string& msg) {
  std::fprintf(stderr, "pesto: %s\n", msg.c_str());
  return kExitLocalError;
}

// Parses argv into *opts. Returns -1 to go on, or an exit code.
int ParseArgs(int argc, char** argv, Options* opts) {
  static const option kLong[] = {
      {"tcp-ports", required_argument, nullptr, 't'},
      {"udp-ports", required_argument, nullptr, 'u'},
      {"tcp-ns", required_argument, nullptr, 'T'},
      {"udp-ns", required_argument, nullptr, 'U'},
      {"add", no_argument, nullptr, 'A'},
      {"delete", no_argument, nullptr, 'D'},
      {"clear", required_argument, nullptr, 'C'},
      {"show", no_argument, nullptr, 's'},
      {"debug", no_argument, nullptr, 'd'},
      {"help", no_argument, nullptr, 'h'},
      {"json", no_argument, nullptr, kOptJson},
      {"version", no_argument, nullptr, kOptVersion},
      {nullptr, 0, nullptr, 0},
  };
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":t:u:T:U:ADC:sdh", kLong, nullptr)) != -1) {
    switch (c) {
      case 't':
      case 'u':
      case 'T':
      case 'U':
      case 'C':
        opts->edits.push_back({static_cast<char>(c), optarg});
        break;
      case 'A':
      case 'D':
        opts->edits.push_back({static_cast<char>(c), ""});
        break;
      case 's':
        opts->show = true;
        break;
      case 'd':
        opts->debug = true;
        break;
      case kOptJson:
        opts->json = true;
        break;
      case 'h':
        std::fputs(kUsage, stdout);
        return 0;
      case kOptVersion:
        std::printf("%s\n", kVersionText);
        return 0;
      case ':':
        return LocalError(
            absl::StrCat("option '", argv[optind - 1], "' needs an argument (see --help)"));
      default:
        return LocalError(absl::StrCat("unknown option '", argv[optind - 1], "' (see --help)"));
    }
  }
  if (optind >= argc) return LocalError("missing control socket PATH (see --help)");
  if (argc - optind > 1)
    return LocalError(absl::StrCat("unexpected argument '", argv[optind + 1], "'"));
  opts->path = argv[optind];
  return -1;
}

std::string Basename(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

int Run(int argc, char** argv) {
  Options opts;
  if (int rc = ParseArgs(argc, argv, &opts); rc >= 0) return rc;

  ctl::ClientOptions copts;
  if (opts.debug) {
    copts.debug = [](const std::string& line) {
      std::fprintf(stderr, "pesto: %s\n", line.c_str());
    };
  }
  absl::StatusOr<ctl::Client> client = ctl::Client::Connect(opts.path, copts);
  if (!client.ok()) return LocalError(std::string(client.status().message()));

  const std::string name = Basename(opts.path);
  const TableSet& before = client->tables();
  bool change = ringfwd::EditsChangeTables(opts.edits);
  std::string json = absl::StrCat("{\"socket\": ", ctl::JsonString(opts.path),
                                  ", \"version\": ", client->hello().version,
                                  ", \"pifs\": ", ctl::TablesJson(before));

  if (!change) {
    client->Close();
    if (opts.json) {
      std::printf("%s}\n", json.c_str());
    } else {
      std::fputs(ctl::FormatTables(absl::StrCat("Configuration (", name, ")"), before).c_str(),
                 stdout);
    }
    return 0;
  }

  TableSet after = before;
  absl::Status edited = ringfwd::ApplyEdits(opts.edits, ReadEphemeralRange(), &after);
  if (!edited.ok()) {
    client->Close();
    return LocalError(std::string(edited.message()));
  }
  if (opts.show && !opts.json) {
    std::fputs(
        ctl::FormatTables(absl::StrCat("Previous configuration (", name, ")"), before).c_str(),
        stdout);
    std::fputs(ctl::FormatTables(absl::StrCat("Updated configuration (", name, ")"), after).c_str(),
               stdout);
    std::fflush(stdout);
  }
  absl::StrAppend(&json, ", \"updated\": ", ctl::TablesJson(after));

  if (!ctl::SupportsTransactions(before)) {
    absl::Status sent = client->SendUpdate(after);
    if (!sent.ok()) return LocalError(std::string(sent.message()));
    if (opts.json) std::printf("%s}\n", json.c_str());
    return 0;
  }

  absl::StatusOr<wire::StatusReply> status = client->SendTransactional(after);
  if (!status.ok()) return LocalError(std::string(status.status().message()));
  if (opts.json) {
    std::printf("%s, \"status\": %s}\n", json.c_str(), ctl::StatusJson(*status).c_str());
  } else {
    std::fputs(ctl::FormatStatus(*status, after).c_str(), stdout);
  }
  if (status->code != wire::StatusCode::kApplied) {
    std::fflush(stdout);
    std::fprintf(stderr, "pesto: update %s%s%s\n", wire::StatusCodeName(status->code),
                 status->message.empty() ? "" : ": ", status->message.c_str());
  }
  return static_cast<int>(status->code);
}

}  // namespace
}  // namespace ringfwd::pesto

int main(int argc, char** argv) { return ringfwd::pesto::Run(argc, argv); }
