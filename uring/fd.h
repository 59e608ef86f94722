// Fd: the one owner of a file descriptor.
//
// A move-only wrapper that closes its descriptor when destroyed. No raw fd is
// stored anywhere else in ringfwd: code that needs the number borrows it with
// get() for the duration of a call.
#pragma once

#include <unistd.h>

#include <utility>

namespace ringfwd {

class Fd {
 public:
  Fd() = default;
  // Takes ownership of `fd` (may be -1 for "none").
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~Fd() { Reset(); }

  // The descriptor number, still owned by this object; -1 when empty.
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership and returns the number; the caller must close it.
  [[nodiscard]] int Release() { return std::exchange(fd_, -1); }

  // Closes the current descriptor (if any) and takes ownership of `fd`.
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace ringfwd
