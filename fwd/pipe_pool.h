// A pool of pipes for splice(2).
//
// A TCP flow holds a pipe only while bytes are in flight through it; an
// empty pipe goes back to the pool, one that still holds bytes when its flow
// dies is closed (its bytes belong to a dead connection and must never reach
// the next one). Pipes are enlarged to the configured size once, at creation.
// A size above fs.pipe-max-size needs CAP_SYS_RESOURCE (which --runas drops):
// without it the pool falls back to that maximum and says so once, rather
// than leaving every pipe at the kernel's 64 KiB.
#pragma once

#include <cstddef>
#include <vector>

#include "uring/fd.h"

namespace ringfwd {

struct Pipe {
  Fd r;  // read end
  Fd w;  // write end
  explicit operator bool() const { return r.valid(); }
};

// fs.pipe-max-size: the largest pipe a process without CAP_SYS_RESOURCE may
// ask for; 0 if it cannot be read.
size_t PipeMaxSize();

class PipePool {
 public:
  // Pipes of `pipe_size` bytes (rounded by the kernel; fs.pipe-max-size if
  // the kernel refuses more; a pipe it refuses to enlarge at all, past
  // fs.pipe-user-pages-soft, keeps its size, with a warning); at most `keep`
  // idle pipes are kept.
  PipePool(size_t pipe_size, size_t keep) : pipe_size_(pipe_size), keep_(keep) {}

  // Makes one pipe now, into the pool: a size the kernel refuses is reported
  // at start rather than at the first bulk transfer.
  void Prime();

  // An empty pipe from the pool or a new one; false (errno set) if pipe2 failed.
  bool Get(Pipe* out);
  // Returns an EMPTY pipe to the pool (closed if the pool is full).
  void Put(Pipe&& p);
  // The capacity of pipes this pool makes, as granted by the kernel.
  size_t capacity() const { return capacity_; }
  // The size asked of the kernel for new pipes (after any fallback).
  size_t pipe_size() const { return pipe_size_; }
  size_t idle() const { return idle_.size(); }
  // Pipes created and not yet closed (in flows or idle), for tests and stats.
  size_t live() const { return live_; }
  // Closes a pipe that may still hold bytes.
  void Discard(Pipe&& p);

 private:
  // Sets a new pipe's size (see the constructor).
  void Enlarge(int fd);

  size_t pipe_size_;
  size_t keep_;
  size_t capacity_ = 65536;
  bool fell_back_ = false;  // a refused size was checked against the maximum
  size_t live_ = 0;
  std::vector<Pipe> idle_;
};

}  // namespace ringfwd
