// LruList: a recency list threaded through the slots of a preallocated flow
// table, by index, so that touching, expiring and evicting a flow allocate
// nothing. Each slot type carries `uint32_t prev, next`; the table owns the
// slots, the list only links them. The most recently used slot is the head;
// expiry walks from the tail, eviction takes the tail.
#pragma once

#include <cstdint>
#include <vector>

namespace ringfwd {

template <typename Slot>
class LruList {
 public:
  static constexpr uint32_t kNil = UINT32_MAX;

  explicit LruList(std::vector<Slot>* slots) : slots_(slots) {}

  uint32_t head() const { return head_; }
  uint32_t tail() const { return tail_; }
  bool empty() const { return tail_ == kNil; }
  // The slot after `i` toward the head (kNil at the head): the next one an
  // expiry walk from the tail visits.
  uint32_t newer(uint32_t i) const { return (*slots_)[i].prev; }

  // Links slot `i` (not in the list) at the head.
  void PushFront(uint32_t i) {
    Slot& s = (*slots_)[i];
    s.prev = kNil;
    s.next = head_;
    if (head_ != kNil) (*slots_)[head_].prev = i;
    head_ = i;
    if (tail_ == kNil) tail_ = i;
  }
  // Unlinks slot `i` (in the list).
  void Unlink(uint32_t i) {
    Slot& s = (*slots_)[i];
    if (s.prev != kNil)
      (*slots_)[s.prev].next = s.next;
    else
      head_ = s.next;
    if (s.next != kNil)
      (*slots_)[s.next].prev = s.prev;
    else
      tail_ = s.prev;
    s.prev = s.next = kNil;
  }
  // Slot `i` (in the list) was just used.
  void MoveToFront(uint32_t i) {
    if (head_ == i) return;
    Unlink(i);
    PushFront(i);
  }

 private:
  std::vector<Slot>* slots_;
  uint32_t head_ = kNil, tail_ = kNil;
};

}  // namespace ringfwd
