#include "posix.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#endif

namespace billiard {

namespace {

int FillAddress(const uint8_t* path, size_t len, sockaddr_un* addr, socklen_t* addr_len) {
  if (len == 0 || len > sizeof(addr->sun_path)) return ENAMETOOLONG;
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path, len);
  // The exact length, as Python passes it: libuv 1.46 pads abstract names to 108 bytes.
  *addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  return 0;
}

}  // namespace

int FdLimit(int64_t* out) {
  rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return errno;
  *out = lim.rlim_cur == RLIM_INFINITY ? INT64_MAX : static_cast<int64_t>(lim.rlim_cur);
  return 0;
}

int SocketPair(int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return errno;
  return 0;
}

int Pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) return errno;
  return 0;
}

// A non-blocking AF_UNIX stream socket and the address `path` names.
static int NewUnixSocket(const uint8_t* path, size_t len, sockaddr_un* addr, socklen_t* addr_len, int* s) {
  int err = FillAddress(path, len, addr, addr_len);
  if (err != 0) return err;
  *s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  return *s < 0 ? errno : 0;
}

int UnixListen(const uint8_t* path, size_t len, int backlog, int* fd) {
  sockaddr_un addr;
  socklen_t addr_len;
  int s;
  int err = NewUnixSocket(path, len, &addr, &addr_len, &s);
  if (err != 0) return err;
  if (bind(s, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0 || listen(s, backlog) != 0) {
    err = errno;
    close(s);
    return err;
  }
  *fd = s;
  return 0;
}

int UnixConnect(const uint8_t* path, size_t len, int* fd, bool* in_progress) {
  sockaddr_un addr;
  socklen_t addr_len;
  int s;
  int err = NewUnixSocket(path, len, &addr, &addr_len, &s);
  if (err != 0) return err;
  int r;
  do {
    r = connect(s, reinterpret_cast<sockaddr*>(&addr), addr_len);
  } while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) {
    err = errno;
    close(s);
    return err;
  }
  *in_progress = r != 0;
  *fd = s;
  return 0;
}

int SetParentDeathSignal(int signal) {
#ifdef __linux__
  if (prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0) != 0) return errno;
  return 0;
#else
  (void)signal;
  return ENOSYS;
#endif
}

int ParentPid() { return static_cast<int>(getppid()); }

int SetBlocking(int fd, bool blocking) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return errno;
  int next = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
  if (next != flags && fcntl(fd, F_SETFL, next) != 0) return errno;
  return 0;
}

int DupCloexec(int fd, int* out) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return errno;
  *out = copy;
  return 0;
}

const char* ErrnoName(int err) {
  switch (err) {
#define BILLIARD_ERRNO(name) \
  case name:                 \
    return #name;
    BILLIARD_ERRNO(EAGAIN)
    BILLIARD_ERRNO(ECONNREFUSED)
    BILLIARD_ERRNO(ENOENT)
    BILLIARD_ERRNO(EADDRINUSE)
    BILLIARD_ERRNO(EACCES)
    BILLIARD_ERRNO(ENAMETOOLONG)
    BILLIARD_ERRNO(EMFILE)
    BILLIARD_ERRNO(ENFILE)
    BILLIARD_ERRNO(EINVAL)
    BILLIARD_ERRNO(ENOTDIR)
    BILLIARD_ERRNO(EPERM)
    BILLIARD_ERRNO(ENOBUFS)
    BILLIARD_ERRNO(ENOMEM)
    BILLIARD_ERRNO(ECONNRESET)
    BILLIARD_ERRNO(ETIMEDOUT)
    BILLIARD_ERRNO(ENOSYS)
    BILLIARD_ERRNO(EBADF)
    BILLIARD_ERRNO(EEXIST)
    BILLIARD_ERRNO(EINTR)
    BILLIARD_ERRNO(ECANCELED)
    BILLIARD_ERRNO(EPROTO)
    BILLIARD_ERRNO(EMSGSIZE)
    BILLIARD_ERRNO(EPIPE)
    BILLIARD_ERRNO(EBADMSG)
    BILLIARD_ERRNO(EOPNOTSUPP)
    BILLIARD_ERRNO(ENOSPC)
#undef BILLIARD_ERRNO
    default: {
      static thread_local char buf[16];
      std::snprintf(buf, sizeof(buf), "E%d", err);
      return buf;
    }
  }
}

}  // namespace billiard
