// POSIX calls Node has no API for. Plain C++: nothing here knows of Node.
// Each returns 0 or a positive errno; results go through out-parameters.
#pragma once

#include <cstddef>
#include <cstdint>

namespace billiard {

// An AF_UNIX SOCK_STREAM socket pair (close-on-exec): Python's Pipe(duplex=True).
int SocketPair(int fds[2]);

// A one-way pipe (close-on-exec): Python's Pipe(duplex=False). fds[0] reads, fds[1] writes.
int Pipe(int fds[2]);

// A listening AF_UNIX socket bound to `path` of exactly `len` bytes (a Linux
// abstract name starts with a NUL byte and is not NUL-terminated).
int UnixListen(const uint8_t* path, size_t len, int backlog, int* fd);

// A non-blocking AF_UNIX socket connecting to `path` of exactly `len` bytes.
// On success *fd is connected (or connecting: *in_progress set); on failure
// the socket is closed and the errno returned (EAGAIN when the accept queue is full).
int UnixConnect(const uint8_t* path, size_t len, int* fd, bool* in_progress);

// Asks the kernel to send `signal` to this process when its parent dies
// (Linux prctl PR_SET_PDEATHSIG); ENOSYS elsewhere.
int SetParentDeathSignal(int signal);

// This process's parent pid.
int ParentPid();

// Sets or clears O_NONBLOCK on a descriptor.
int SetBlocking(int fd, bool blocking);

// A close-on-exec duplicate of fd in *out (the lowest free number).
int DupCloexec(int fd, int* out);

// The soft limit on open descriptors (RLIMIT_NOFILE) in *out.
int FdLimit(int64_t* out);

// The errno's symbolic name ("EAGAIN"), or "E<number>".
const char* ErrnoName(int err);

}  // namespace billiard
