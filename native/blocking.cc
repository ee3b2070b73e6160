#include "blocking.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <mutex>
#include <poll.h>
#include <random>
#include <string>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <atomic>
#include <thread>
#include <time.h>
#include <unistd.h>

namespace billiard {

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// ---- the pool ------------------------------------------------------------

namespace {

struct Pool {
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Job>> queue;
  size_t idle = 0;
};

// Never destroyed: threads may outlive static destruction at exit.
Pool& ThePool() {
  static Pool* pool = new Pool();
  return *pool;
}

void Worker() {
  Pool& pool = ThePool();
  std::unique_lock<std::mutex> lock(pool.m);
  for (;;) {
    while (pool.queue.empty()) {
      ++pool.idle;
      std::cv_status st = pool.cv.wait_for(lock, std::chrono::seconds(30));
      --pool.idle;
      if (st == std::cv_status::timeout && pool.queue.empty()) return;
    }
    std::shared_ptr<Job> job = std::move(pool.queue.front());
    pool.queue.pop_front();
    lock.unlock();
    job->Run();
    if (job->done) job->done();
    job.reset();
    lock.lock();
  }
}

}  // namespace

void Submit(std::shared_ptr<Job> job) {
  Pool& pool = ThePool();
  std::lock_guard<std::mutex> lock(pool.m);
  pool.queue.push_back(std::move(job));
  if (pool.idle >= pool.queue.size()) {
    pool.cv.notify_one();
  } else {
    std::thread(Worker).detach();
  }
}

// ---- semaphores ------------------------------------------------------------

Sem::~Sem() { sem_close(sem_); }

int SemCreate(const char* name, unsigned value, bool unlink_now, std::shared_ptr<Sem>* out) {
  sem_t* s = sem_open(name, O_CREAT | O_EXCL, 0600, value);
  if (s == SEM_FAILED) return errno;
  if (unlink_now) sem_unlink(name);
  *out = std::make_shared<Sem>(s);
  return 0;
}

int SemOpen(const char* name, std::shared_ptr<Sem>* out) {
  sem_t* s = sem_open(name, 0);
  if (s == SEM_FAILED) return errno;
  *out = std::make_shared<Sem>(s);
  return 0;
}

int SemUnlink(const char* name) { return sem_unlink(name) == 0 ? 0 : errno; }

int SemTryWait(Sem& sem) {
  for (;;) {
    if (sem_trywait(sem.get()) == 0) return 1;
    if (errno == EAGAIN) return 0;
    if (errno != EINTR) return -errno;
  }
}

int SemPost(Sem& sem) { return sem_post(sem.get()) == 0 ? 0 : errno; }

int SemGetValue(Sem& sem, int* value) { return sem_getvalue(sem.get(), value) == 0 ? 0 : errno; }

namespace {

timespec ToTimespec(int64_t ns) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return ts;
}

}  // namespace

int SemWaitUntil(Sem& sem, int64_t deadline_ns, const std::atomic<bool>* cancelled) {
  for (;;) {
    if (cancelled != nullptr && cancelled->load(std::memory_order_relaxed)) return 0;
    int64_t now = MonotonicNs();
    if (deadline_ns >= 0 && now >= deadline_ns) return SemTryWait(sem);
    int64_t until = cancelled == nullptr ? deadline_ns : now + Job::kSliceNs;
    if (deadline_ns >= 0 && (until < 0 || until > deadline_ns)) until = deadline_ns;
    int r;
    if (until < 0) {
      r = sem_wait(sem.get());
    } else {
      timespec ts = ToTimespec(until);
      r = sem_clockwait(sem.get(), CLOCK_MONOTONIC, &ts);
    }
    if (r == 0) return 1;
    if (errno != EINTR && errno != ETIMEDOUT) return -errno;
  }
}

void SemWaitJob::Run() {
  int r = SemTryWait(*sem_);
  result = r != 0 ? r : SemWaitUntil(*sem_, deadline_ns_, &cancelled_flag());
}

// ---- frames ----------------------------------------------------------------

int64_t Readable(int fd) {
  int n = 0;
  if (ioctl(fd, FIONREAD, &n) != 0) return -errno;
  return n;
}

namespace {

int64_t BigEndian32(const uint8_t* b) {
  return static_cast<int32_t>((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]});
}

int64_t BigEndian64(const uint8_t* b) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | b[i];
  return v > static_cast<uint64_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v);
}

}  // namespace

namespace {

// Whether preadv2(RWF_NOWAIT) works on pipes here (Linux 5.8 and later):
// 0 not known yet, 1 yes, -1 no (FIONREAD sizes the reads instead).
std::atomic<int> g_nowait{0};

}  // namespace

void SetReadNoWait(bool use) { g_nowait.store(use ? 0 : -1, std::memory_order_relaxed); }

bool ReadNoWaitUsed() { return g_nowait.load(std::memory_order_relaxed) > 0; }

ssize_t ReadNoWait(int fd, uint8_t* buf, size_t n) {
#ifdef RWF_NOWAIT
  if (g_nowait.load(std::memory_order_relaxed) >= 0) {
    iovec v{buf, n};
    for (;;) {
      ssize_t r = preadv2(fd, &v, 1, -1, RWF_NOWAIT);
      if (r >= 0) {
        g_nowait.store(1, std::memory_order_relaxed);
        return r;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return -EAGAIN;
      // An older kernel refuses the flag; a socket or file may too.
      if ((errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) && g_nowait.load(std::memory_order_relaxed) == 0) {
        g_nowait.store(-1, std::memory_order_relaxed);
        break;
      }
      return -errno;
    }
  }
#endif
  int64_t avail = Readable(fd);
  if (avail < 0) return avail;
  if (avail == 0) return -EAGAIN;  // (or end of file: a pool thread tells)
  for (;;) {
    ssize_t r = read(fd, buf, std::min(n, static_cast<size_t>(avail)));
    if (r >= 0) return r;
    if (errno != EINTR) return -errno;
  }
}

namespace {

// Reads into buf until n bytes are in (1), none more are there now (0), end
// of file (-EBADMSG: a frame was begun) or an error (-errno); *got counts.
int FillNoWait(int fd, uint8_t* buf, size_t n, size_t* got) {
  while (*got < n) {
    ssize_t r = ReadNoWait(fd, buf + *got, n - *got);
    if (r == -EAGAIN) return 0;
    if (r == 0) return -EBADMSG;
    if (r < 0) return static_cast<int>(r);
    *got += static_cast<size_t>(r);
  }
  return 1;
}

// The frame's length once its header is whole: -1 while the 8-byte extended
// length is still to come, -EPROTO for a bad one.
int64_t HeaderLength(const FramePart& part) {
  int64_t len = BigEndian32(part.header);
  if (len != -1) return len < 0 ? -EPROTO : len;
  if (part.header_have < 12) return -1;
  len = BigEndian64(part.header + 4);
  return len < 0 ? -EPROTO : len;
}

}  // namespace

int TakeFrame(int fd, int64_t max_size, uint8_t* buf, size_t cap, FramePart* part, size_t* len) {
  int r = FillNoWait(fd, part->header, 4, &part->header_have);
  if (r == -EBADMSG && part->header_have == 0) return -EPIPE;
  if (r <= 0) return r < 0 ? r : (part->header_have == 0 ? 0 : 2);
  if (BigEndian32(part->header) == -1) {
    r = FillNoWait(fd, part->header, 12, &part->header_have);
    if (r <= 0) return r < 0 ? r : 2;
  }
  int64_t n = HeaderLength(*part);
  if (n < 0) return static_cast<int>(n);
  if (n > max_size) return -EMSGSIZE;
  part->expected = n;
  const size_t want = static_cast<size_t>(n);
  size_t got = 0;
  if (want <= cap) {
    r = FillNoWait(fd, buf, want, &got);
    if (r == 1) {
      *len = want;
      return 1;
    }
    if (r < 0) return r;
    part->payload.assign(buf, buf + got);
    return 2;
  }
  // Larger than the caller's buffer: as much as is there, not what the header claims.
  int64_t avail = Readable(fd);
  if (avail < 0) return static_cast<int>(avail);
  part->payload.resize(std::min(want, static_cast<size_t>(avail)));
  r = FillNoWait(fd, part->payload.data(), part->payload.size(), &got);
  part->payload.resize(got);
  if (r < 0) return r;
  if (got < want) return 2;
  *len = want;
  part->whole = true;
  return 1;
}

int TryWrite(int fd, const iovec* iov_in, int count, size_t total) {
  int cap = fcntl(fd, F_GETPIPE_SZ);
  if (cap < 0) return 0;  // not a pipe: let a thread write
  int64_t queued = Readable(fd);
  if (queued < 0) return 0;
  // A pipe holds cap/4096 pages; a page may be half full, so count queued
  // bytes twice and keep two pages spare: then the write cannot block.
  if (2 * queued + static_cast<int64_t>(total) + 8192 > cap) return 0;
  std::vector<iovec> iov(iov_in, iov_in + count);
  size_t done = 0;
  size_t first = 0;
  while (done < total) {
    // writev takes at most IOV_MAX pieces (1024 on Linux): EINVAL past it.
    int pieces = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t w = writev(fd, iov.data() + first, pieces);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    done += static_cast<size_t>(w);
    // Step past what was written (a signal can cut a write short).
    size_t skip = static_cast<size_t>(w);
    while (first < iov.size() && skip >= iov[first].iov_len) skip -= iov[first++].iov_len;
    if (first < iov.size()) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + skip;
      iov[first].iov_len -= skip;
    }
  }
  return 1;
}

namespace {

// Waits for fd to become readable (POLLIN or POLLHUP): 1, 0 at the
// deadline or on cancel, -errno.
int WaitReadable(int fd, int64_t deadline_ns, const std::atomic<bool>& cancelled) {
  for (;;) {
    if (cancelled.load(std::memory_order_relaxed)) return 0;
    int64_t now = MonotonicNs();
    int64_t slice = Job::kSliceNs;
    if (deadline_ns >= 0) slice = std::min(slice, deadline_ns - now);
    if (slice < 0) slice = 0;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>((slice + 999'999) / 1'000'000));
    if (r > 0) {
      if (p.revents & POLLNVAL) return -EBADF;
      return 1;
    }
    if (r < 0 && errno != EINTR) return -errno;
    if (deadline_ns >= 0 && MonotonicNs() >= deadline_ns) return 0;
  }
}

}  // namespace

void ReadFrameJob::Run() {
  auto fill = [&](uint8_t* buf, size_t n, size_t at, bool first_may_time_out) -> int {
    size_t got = at;
    int64_t last = MonotonicNs();
    while (got < n) {
      int64_t deadline = first_may_time_out && got == 0 ? deadline_ns_ : (stall_ns_ < 0 ? -1 : last + stall_ns_);
      int w = WaitReadable(fd_, deadline, cancelled_flag());
      if (w < 0) return w;
      if (w == 0) {
        if (Cancelled()) return first_may_time_out && got == 0 ? 0 : -ECANCELED;
        return first_may_time_out && got == 0 ? 0 : -ETIMEDOUT;
      }
      ssize_t r = read(fd_, buf + got, n - got);
      if (r > 0) {
        got += static_cast<size_t>(r);
        last = MonotonicNs();
      } else if (r == 0) {
        return first_may_time_out && got == 0 ? -EPIPE : -EBADMSG;
      } else if (errno != EINTR && errno != EAGAIN) {
        return -errno;
      }
    }
    return 1;
  };
  FramePart& p = part;
  if (p.header_have < 4) {
    int r = fill(p.header, 4, p.header_have, p.header_have == 0);
    if (r <= 0) {
      result = r;
      return;
    }
    p.header_have = 4;
  }
  if (BigEndian32(p.header) == -1 && p.header_have < 12) {
    int r = fill(p.header, 12, p.header_have, false);
    if (r <= 0) {
      result = r;
      return;
    }
    p.header_have = 12;
  }
  int64_t len = HeaderLength(p);
  if (len < 0) {
    result = -EPROTO;
    return;
  }
  if (len > max_size_) {
    result = -EMSGSIZE;
    return;
  }
  const size_t want = static_cast<size_t>(len);
  while (p.payload.size() < want) {
    size_t at = p.payload.size();
    // Grow with what arrives, not with what the header claims.
    size_t next = std::min(want, std::max(at * 2, at + size_t{65536}));
    p.payload.resize(next);
    int r = fill(p.payload.data(), next, at, false);
    if (r <= 0) {
      p.payload.clear();
      result = r == 0 ? -ETIMEDOUT : r;
      return;
    }
  }
  result = 1;
}

void WriteJob::Run() {
  size_t done = 0;
  while (done < data_.size()) {
    if (Cancelled()) {
      result = -ECANCELED;
      return;
    }
    pollfd p{fd_, POLLOUT, 0};
    int r = poll(&p, 1, static_cast<int>(kSliceNs / 1'000'000));
    if (r < 0 && errno != EINTR) {
      result = -errno;
      return;
    }
    if (r <= 0) continue;
    if (p.revents & (POLLERR | POLLNVAL)) {
      result = (p.revents & POLLNVAL) ? -EBADF : -EPIPE;
      return;
    }
    // POLLOUT promises PIPE_BUF bytes; more when the pipe is emptier.
    size_t chunk = 4096;
    int cap = fcntl(fd_, F_GETPIPE_SZ);
    int64_t queued = Readable(fd_);
    if (cap > 0 && queued >= 0 && cap - 2 * queued - 8192 > 4096) chunk = static_cast<size_t>(cap - 2 * queued - 8192);
    if (cap < 0) chunk = data_.size() - done;  // a socket: a blocking write is the only way
    ssize_t w = write(fd_, data_.data() + done, std::min(chunk, data_.size() - done));
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      result = -errno;
      return;
    }
    done += static_cast<size_t>(w);
  }
  result = 1;
}

void PollJob::Run() { result = WaitReadable(fd_, deadline_ns_, cancelled_flag()); }

// ---- shared memory ---------------------------------------------------------

int CreateArena(const char* dir, size_t size, int* fd, void** addr) {
  if (size == 0) return EINVAL;
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
  std::random_device rd;
  std::mt19937 gen(rd());
  std::uniform_int_distribution<int> pick(0, sizeof(kChars) - 2);
  int f = -1;
  for (int attempt = 0; attempt < 100 && f < 0; ++attempt) {
    std::string name = std::string(dir) + "/pym-" + std::to_string(getpid()) + "-";
    for (int i = 0; i < 8; ++i) name += kChars[pick(gen)];
    f = open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f < 0 && errno != EEXIST) return errno;
    if (f >= 0) unlink(name.c_str());
  }
  if (f < 0) return EEXIST;
  int err = 0;
  if (ftruncate(f, static_cast<off_t>(size)) != 0) err = errno;
  // Reserve the pages now: a full tmpfs is an error here, not a SIGBUS later.
  if (err == 0) {
    int fa = posix_fallocate(f, 0, static_cast<off_t>(size));
    if (fa != 0 && fa != EOPNOTSUPP && fa != EINVAL) err = fa;
  }
  if (err == 0) err = MapFd(f, size, addr);
  if (err != 0) {
    close(f);
    return err;
  }
  *fd = f;
  return 0;
}

int MapFd(int fd, size_t size, void** addr) {
  if (size == 0) return EINVAL;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno;
  *addr = p;
  return 0;
}

void Unmap(void* addr, size_t size) { munmap(addr, size); }

// ---- descriptor passing ------------------------------------------------------

int SendFds(int sock, const int* fds, size_t count) {
  if (count == 0 || count > 253) return EINVAL;
  uint8_t byte = static_cast<uint8_t>(count % 256);
  iovec iov{&byte, 1};
  std::vector<uint8_t> control(CMSG_SPACE(sizeof(int) * count));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * count);
  std::memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
  for (;;) {
    ssize_t r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (r == 1) return 0;
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? errno : EIO;
  }
}

int RecvFds(int sock, size_t max, std::vector<int>* fds) {
  if (max == 0 || max > 253) return EINVAL;
  uint8_t byte = 0;
  iovec iov{&byte, 1};
  std::vector<uint8_t> control(CMSG_SPACE(sizeof(int) * max));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t r;
  do {
    r = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return errno;
  if (r == 0) return EPIPE;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* got = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (size_t i = 0; i < n; ++i) fds->push_back(got[i]);
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    for (int f : *fds) close(f);
    fds->clear();
    return EMSGSIZE;
  }
  if (fds->empty() || fds->size() % 256 != byte) {
    for (int f : *fds) close(f);
    fds->clear();
    return EBADMSG;
  }
  return 0;
}

}  // namespace billiard
