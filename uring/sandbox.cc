#include "uring/sandbox.h"

#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "uring/status.h"

namespace ringfwd {
namespace {

#if defined(__x86_64__)
constexpr uint32_t kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kArch = AUDIT_ARCH_AARCH64;
#else
#error "seccomp filter: unsupported architecture"
#endif

// What the daemon calls after setup.
constexpr int kAllowed[] = {
    // io_uring and the data path
    SYS_io_uring_enter,
    SYS_io_uring_register,
    SYS_splice,
    SYS_socket,
    SYS_connect,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_getsockname,
    SYS_getpeername,
    SYS_shutdown,
    SYS_close,
    SYS_read,
    SYS_write,
    SYS_readv,
    SYS_writev,
    SYS_recvfrom,
    SYS_sendto,
    SYS_recvmsg,
    SYS_sendmsg,
    SYS_recvmmsg,
    SYS_sendmmsg,
    SYS_pipe2,
    SYS_fcntl,
    SYS_bind,
    SYS_listen,
    SYS_accept4,
    SYS_ioctl,
    // control server and timers
    SYS_poll,
    SYS_ppoll,
    SYS_futex,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_nanosleep,
    SYS_gettimeofday,
    SYS_getpid,
    SYS_gettid,
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_sched_yield,
    SYS_getrandom,
    SYS_fstat,
    SYS_newfstatat,
    SYS_statx,
    SYS_lseek,
    SYS_eventfd2,
    // memory
    SYS_mmap,
    SYS_munmap,
    SYS_mremap,
    SYS_madvise,
    SYS_brk,
    SYS_mprotect,
    // logs (SIGHUP reopens the file), shutdown (the socket file goes)
    SYS_openat,
    SYS_unlink,
    SYS_unlinkat,
    // signals, threads ending, exit
    SYS_rt_sigreturn,
    SYS_sigaltstack,  // thread exit under sanitizers
    SYS_rt_sigprocmask,
    SYS_rt_sigaction,
    SYS_tgkill,
    SYS_exit,
    SYS_exit_group,
    SYS_restart_syscall,
    SYS_set_robust_list,
    SYS_rseq,
};

absl::Status LoadFilter(const std::vector<sock_filter>& prog, bool tsync) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return ErrnoError(errno, "no_new_privs");
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), const_cast<sock_filter*>(prog.data())};
  unsigned flags = tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0;
  long ret = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
  if (ret != 0) return ErrnoError(ret < 0 ? errno : EBUSY, "install seccomp filter");
  return absl::OkStatus();
}

void ArchCheck(std::vector<sock_filter>* p, uint32_t on_mismatch) {
  p->push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  p->push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0));
  p->push_back(BPF_STMT(BPF_RET | BPF_K, on_mismatch));
  p->push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
}

}  // namespace

absl::StatusOr<RunAs> ParseRunAs(const std::string& text) {
  RunAs who;
  std::string user = text, group_name;
  size_t colon = text.find(':');
  if (colon != std::string::npos) {
    user = text.substr(0, colon);
    group_name = text.substr(colon + 1);
  }
  uint32_t n;
  bool have_gid = false;
  if (absl::SimpleAtoi(user, &n)) {
    who.uid = n;
    if (passwd* pw = getpwuid(n)) {
      who.gid = pw->pw_gid;
      have_gid = true;
    }
  } else if (passwd* pw = getpwnam(user.c_str())) {
    who.uid = pw->pw_uid;
    who.gid = pw->pw_gid;
    have_gid = true;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--runas: unknown user '", user, "'"));
  }
  if (!group_name.empty()) {
    if (absl::SimpleAtoi(group_name, &n)) {
      who.gid = n;
    } else if (struct group* gr = getgrnam(group_name.c_str())) {
      who.gid = gr->gr_gid;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--runas: unknown group '", group_name, "'"));
    }
  } else if (!have_gid) {
    who.gid = who.uid;
  }
  return who;
}

absl::Status DropPrivileges(const RunAs& who) {
  if (setgroups(0, nullptr) < 0 && errno != EPERM) return ErrnoError(errno, "setgroups");
  if (setgid(who.gid) < 0) return ErrnoError(errno, absl::StrCat("setgid ", who.gid));
  if (setuid(who.uid) < 0) return ErrnoError(errno, absl::StrCat("setuid ", who.uid));
  if (who.uid != 0 && setuid(0) == 0) return absl::InternalError("could regain root after setuid");
  return absl::OkStatus();
}

absl::Status InstallSeccomp() {
  std::vector<sock_filter> p;
  ArchCheck(&p, SECCOMP_RET_KILL_PROCESS);
  constexpr size_t n = sizeof(kAllowed) / sizeof(kAllowed[0]);
  for (size_t i = 0; i < n; i++) {
    // Equal: jump to the ALLOW at the end; else fall through to the next.
    p.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(kAllowed[i]),
                         static_cast<uint8_t>(n - i), 0));
  }
  p.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)));
  p.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return LoadFilter(p, true);
}

absl::Status DenySyscall(int nr, int err) {
  std::vector<sock_filter> p;
  ArchCheck(&p, SECCOMP_RET_ALLOW);
  p.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
  p.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)));
  p.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return LoadFilter(p, false);
}

}  // namespace ringfwd
