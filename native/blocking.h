// Blocking POSIX calls made off the event loop, on billiard-ts's own threads.
// Plain C++: nothing here knows of Node. A Job's Run() happens on a pool
// thread; whoever submitted it learns of the end through its Done callback,
// also called on the pool thread (the binding forwards it to the loop).
//
// The pool is not libuv's: a hundred processes blocked in sem_wait must not
// take the four threads fs and dns share. Threads are made on demand (one
// per job waiting at once), kept idle for a while, then end.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <semaphore.h>
#include <sys/uio.h>
#include <vector>

namespace billiard {

// CLOCK_MONOTONIC now, in nanoseconds.
int64_t MonotonicNs();

class Job {
 public:
  virtual ~Job() = default;
  // Runs on a pool thread; blocking is allowed. Poll Cancelled() at least
  // every kSliceNs.
  virtual void Run() = 0;
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool Cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  const std::atomic<bool>& cancelled_flag() const { return cancelled_; }
  // Called on the pool thread after Run().
  std::function<void()> done;

  static constexpr int64_t kSliceNs = 50'000'000;  // 50 ms

 private:
  std::atomic<bool> cancelled_{false};
};

// Runs `job` on a pool thread.
void Submit(std::shared_ptr<Job> job);

// A named (or unlinked) POSIX semaphore, closed when the last user lets go.
class Sem {
 public:
  explicit Sem(sem_t* sem) : sem_(sem) {}
  ~Sem();
  Sem(const Sem&) = delete;
  Sem& operator=(const Sem&) = delete;
  sem_t* get() const { return sem_; }

 private:
  sem_t* sem_;
};

// sem_open(name, O_CREAT | O_EXCL, 0600, value) as CPython's SemLock does;
// unlinks the name at once when unlink_now. 0 or errno.
int SemCreate(const char* name, unsigned value, bool unlink_now, std::shared_ptr<Sem>* out);
// sem_open(name, 0): an existing semaphore. 0 or errno.
int SemOpen(const char* name, std::shared_ptr<Sem>* out);
int SemUnlink(const char* name);
// sem_trywait: 1 taken, 0 not available, or -errno.
int SemTryWait(Sem& sem);
int SemPost(Sem& sem);
int SemGetValue(Sem& sem, int* value);
// Blocks the calling thread until taken (1), the deadline passes (0) or an
// error (-errno). deadline_ns < 0 waits forever. `cancelled` may be null.
int SemWaitUntil(Sem& sem, int64_t deadline_ns, const std::atomic<bool>* cancelled);

// Waits for the semaphore on a pool thread. result: 1 taken, 0 timed out or
// cancelled, -errno on failure.
class SemWaitJob : public Job {
 public:
  SemWaitJob(std::shared_ptr<Sem> sem, int64_t deadline_ns) : sem_(std::move(sem)), deadline_ns_(deadline_ns) {}
  void Run() override;
  int result = 0;

 private:
  std::shared_ptr<Sem> sem_;
  int64_t deadline_ns_;
};

// Frames on a blocking pipe or socket shared with other processes (a Queue's
// ends): a 4-byte big-endian signed length (or -1 and an 8-byte one), then
// the payload. Nothing here changes the descriptor's flags: a Python process
// holding the same open file expects it blocking.

// Bytes readable now (FIONREAD), or -errno.
int64_t Readable(int fd);

// Reads up to n bytes that are readable now, never waiting: the count (>0),
// 0 at end of file, -EAGAIN when none are there, -errno. preadv2 with
// RWF_NOWAIT where the kernel has it, else FIONREAD then read.
ssize_t ReadNoWait(int fd, uint8_t* buf, size_t n);

// Tests: false makes ReadNoWait use FIONREAD (as where the kernel lacks
// RWF_NOWAIT); true tries RWF_NOWAIT again. ReadNoWaitUsed: it worked.
void SetReadNoWait(bool use);
bool ReadNoWaitUsed();

// A frame read in part: its header bytes so far, then its payload so far.
struct FramePart {
  uint8_t header[12];
  size_t header_have = 0;
  int64_t expected = -1;  // the payload's length, once the header is whole
  bool whole = false;     // the whole frame is in `payload`
  std::vector<uint8_t> payload;
};

// Takes a frame of what is readable now, never waiting. 1: a whole frame,
// *len bytes long, in buf when it fits in cap bytes, else in part->payload
// (part->whole). 0: nothing was taken. 2: a frame was begun but not all of
// it is there yet: *part holds what was read (ReadFrameJob finishes it).
// -errno: -EPIPE end of file before a frame, -EBADMSG inside one, -EPROTO a
// bad header, -EMSGSIZE over max_size.
int TakeFrame(int fd, int64_t max_size, uint8_t* buf, size_t cap, FramePart* part, size_t* len);

// Writes the buffers now if they certainly fit in the pipe without
// blocking. 1 written, 0 not attempted (full, or not a pipe), -errno.
int TryWrite(int fd, const struct iovec* iov, int count, size_t total);

// Reads one frame on a pool thread: waits for the header until the
// deadline (none read: timed_out), then reads the payload, giving up when
// nothing arrives for stall_ns (a writer that died mid-frame).
class ReadFrameJob : public Job {
 public:
  ReadFrameJob(int fd, int64_t deadline_ns, int64_t stall_ns, int64_t max_size, FramePart partial)
      : fd_(fd), deadline_ns_(deadline_ns), stall_ns_(stall_ns), max_size_(max_size), part(std::move(partial)) {}
  void Run() override;
  // 1 a frame, 0 timed out or cancelled before a header, -errno otherwise:
  // -EPROTO bad header, -EMSGSIZE over max_size, -EPIPE end of file before a
  // header, -ETIMEDOUT stalled mid-frame, -EBADMSG end of file mid-frame.
  int result = 0;

 private:
  int fd_;
  int64_t deadline_ns_;
  int64_t stall_ns_;
  int64_t max_size_;

 public:
  FramePart part;  // the frame so far; its payload once result is 1
};

// Writes bytes (a whole frame, or several) on a pool thread, blocking.
class WriteJob : public Job {
 public:
  WriteJob(int fd, std::vector<uint8_t> data) : fd_(fd), data_(std::move(data)) {}
  void Run() override;
  int result = 0;  // 1 written, -errno

 private:
  int fd_;
  std::vector<uint8_t> data_;
};

// Waits until fd is readable (1), the deadline passes (0) or -errno.
class PollJob : public Job {
 public:
  PollJob(int fd, int64_t deadline_ns) : fd_(fd), deadline_ns_(deadline_ns) {}
  void Run() override;
  int result = 0;

 private:
  int fd_;
  int64_t deadline_ns_;
};

// Shared memory: a file of `size` zero bytes in `dir`, named
// pym-<pid>-<random>, unlinked at once and mapped MAP_SHARED.
int CreateArena(const char* dir, size_t size, int* fd, void** addr);
// Maps `size` bytes of an open descriptor MAP_SHARED.
int MapFd(int fd, size_t size, void** addr);
void Unmap(void* addr, size_t size);

// SCM_RIGHTS over an AF_UNIX socket, as billiard's reduction.sendfds and
// recvfds: one byte (len(fds) % 256) carries the descriptors.
int SendFds(int sock, const int* fds, size_t count);
// Receives up to `max` descriptors (close-on-exec) without blocking (EAGAIN).
int RecvFds(int sock, size_t max, std::vector<int>* fds);

}  // namespace billiard
