// The Node binding of native/blocking.h: semaphores, frames on shared pipes,
// shared memory, descriptor passing. Jobs end on a pool thread; their
// results reach the event loop through one uv_async_t per environment.
#include <napi.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#if defined(__linux__) && defined(__GLIBC__) && defined(__x86_64__)
#include <linux/futex.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <unistd.h>
#define BILLIARD_SEM_WORD 1
#endif

#include "blocking.h"
#include "posix.h"
#include "sync_binding.h"

namespace billiard {

namespace {

Napi::Error MakeErrno(Napi::Env env, int err, const char* call) {
  Napi::Error e = Napi::Error::New(env, std::string(call) + " failed: " + strerror(err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, call));
  return e;
}

Napi::Value ThrowErrno(Napi::Env env, int err, const char* call) {
  MakeErrno(env, err, call).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowType(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

// Seconds (Infinity or negative: forever) to a CLOCK_MONOTONIC deadline.
int64_t Deadline(const Napi::Value& v) {
  if (!v.IsNumber()) return -1;
  double s = v.As<Napi::Number>().DoubleValue();
  if (!(s >= 0) || s > 1e9) return -1;
  return MonotonicNs() + static_cast<int64_t>(s * 1e9);
}

int64_t Duration(const Napi::Value& v) {
  if (!v.IsNumber()) return -1;
  double s = v.As<Napi::Number>().DoubleValue();
  if (!(s >= 0) || s > 1e9) return -1;
  return static_cast<int64_t>(s * 1e9);
}

}  // namespace

// ---- delivery of results to the loop ----------------------------------------

struct Delivery {
  napi_env env = nullptr;
  uv_async_t* async = nullptr;
  std::mutex m;
  std::vector<std::function<void(Napi::Env)>> done;
  bool dead = false;
  int64_t pending = 0;
  std::unordered_map<double, std::weak_ptr<Job>> cancellable;

  void Retain() {
    if (pending++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(async));
  }
  void Release() {
    if (--pending == 0) uv_unref(reinterpret_cast<uv_handle_t*>(async));
  }
};

namespace {

void Drain(uv_async_t* handle) {
  auto* holder = static_cast<std::shared_ptr<Delivery>*>(handle->data);
  std::shared_ptr<Delivery> d = *holder;
  std::vector<std::function<void(Napi::Env)>> batch;
  {
    std::lock_guard<std::mutex> lock(d->m);
    batch.swap(d->done);
  }
  Napi::Env env(d->env);
  Napi::HandleScope scope(env);
  for (auto& f : batch) {
    f(env);
    d->Release();
    if (env.IsExceptionPending()) {
      // A throwing continuation must not stop the others; report it as Node would.
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }
}

// The environment ends: drop what is undelivered, cancel what runs.
void FinalizeDelivery(Napi::Env, std::shared_ptr<Delivery>* data) {
  std::shared_ptr<Delivery> d = *data;
  delete data;
  std::vector<std::shared_ptr<Job>> running;
  {
    std::lock_guard<std::mutex> lock(d->m);
    d->dead = true;
    d->done.clear();
    for (auto& [id, weak] : d->cancellable) {
      if (auto j = weak.lock()) running.push_back(j);
    }
  }
  for (auto& j : running) j->Cancel();
  uv_close(reinterpret_cast<uv_handle_t*>(d->async), [](uv_handle_t* h) {
    delete static_cast<std::shared_ptr<Delivery>*>(h->data);
    delete reinterpret_cast<uv_async_t*>(h);
  });
}

}  // namespace

std::shared_ptr<Delivery> DeliveryFor(Napi::Env env) {
  auto* holder = env.GetInstanceData<std::shared_ptr<Delivery>>();
  if (holder != nullptr) return *holder;
  auto d = std::make_shared<Delivery>();
  d->env = env;
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  d->async = new uv_async_t;
  uv_async_init(loop, d->async, Drain);
  d->async->data = new std::shared_ptr<Delivery>(d);
  uv_unref(reinterpret_cast<uv_handle_t*>(d->async));
  env.SetInstanceData<std::shared_ptr<Delivery>, FinalizeDelivery>(new std::shared_ptr<Delivery>(d));
  return d;
}

// Runs `job` on a pool thread, then `finish(env)` on the loop.
void Run(Napi::Env env, std::shared_ptr<Job> job, double id, std::function<void(Napi::Env)> finish) {
  std::shared_ptr<Delivery> d = DeliveryFor(env);
  d->Retain();
  if (id != 0) {
    std::lock_guard<std::mutex> lock(d->m);
    d->cancellable[id] = job;
  }
  std::weak_ptr<Delivery> weak = d;
  job->done = [weak, id, finish = std::move(finish)]() mutable {
    std::shared_ptr<Delivery> d = weak.lock();
    if (!d) return;
    std::lock_guard<std::mutex> lock(d->m);
    if (d->dead) return;
    if (id != 0) d->cancellable.erase(id);
    d->done.push_back(std::move(finish));
    uv_async_send(d->async);
  };
  Submit(std::move(job));
}

namespace {

Napi::Value CancelJob(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(info.Env(), "cancelJob(id: number)");
  std::shared_ptr<Delivery> d = DeliveryFor(info.Env());
  std::shared_ptr<Job> job;
  {
    std::lock_guard<std::mutex> lock(d->m);
    auto it = d->cancellable.find(info[0].As<Napi::Number>().DoubleValue());
    if (it != d->cancellable.end()) job = it->second.lock();
  }
  if (job) job->Cancel();
  return Napi::Boolean::New(info.Env(), static_cast<bool>(job));
}

double JobId(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : 0;
}

// ---- semaphores --------------------------------------------------------------

#ifdef BILLIARD_SEM_WORD
// glibc (2.21 and later, 64-bit) keeps a sem_t's state in its first 8 bytes:
// the value in the low 32 bits, the number of sleeping waiters in the high
// 32, and a waiter sleeps with FUTEX_WAIT on the low word. JavaScript can
// then take and post an uncontended semaphore with Atomics on that word, as
// sem_trywait and sem_post do, without a call into the addon. Checked once
// on a private semaphore: any other layout keeps every operation native.
bool SemWordLayoutOk() {
  static const bool ok = [] {
    alignas(16) sem_t s;
    if (sem_init(&s, 0, 5) != 0) return false;
    auto* word = reinterpret_cast<volatile uint32_t*>(&s);
    bool good = word[0] == 5 && word[1] == 0;
    good = good && sem_post(&s) == 0 && word[0] == 6 && word[1] == 0;
    good = good && sem_trywait(&s) == 0 && sem_trywait(&s) == 0 && word[0] == 4;
    sem_destroy(&s);
    return good;
  }();
  return ok;
}
#endif

class Semaphore : public Napi::ObjectWrap<Semaphore> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Semaphore",
                       {
                           StaticMethod<&Semaphore::Create>("create"),
                           StaticMethod<&Semaphore::Open>("open"),
                           StaticMethod<&Semaphore::Unlink>("unlink"),
                           InstanceMethod<&Semaphore::TryWait>("tryWait"),
                           InstanceMethod<&Semaphore::Post>("post"),
                           InstanceMethod<&Semaphore::GetValue>("getValue"),
                           InstanceMethod<&Semaphore::Wait>("wait"),
                           InstanceMethod<&Semaphore::WaitSync>("waitSync"),
                           InstanceMethod<&Semaphore::Close>("close"),
                           InstanceAccessor<&Semaphore::Handle>("handle"),
                           InstanceMethod<&Semaphore::Word>("word"),
                           InstanceMethod<&Semaphore::Wake>("wake"),
                       });
  }

  explicit Semaphore(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Semaphore>(info) {}

 private:
  // Static methods are called on the class: `this` is its constructor.
  static Napi::Value Wrap(const Napi::CallbackInfo& info, std::shared_ptr<Sem> sem) {
    Napi::Object obj = info.This().As<Napi::Function>().New({});
    Semaphore::Unwrap(obj)->sem_ = std::move(sem);
    return obj;
  }

  static Napi::Value Create(const Napi::CallbackInfo& info) {
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsBoolean()) {
      return ThrowType(info.Env(), "create(name: string, value: number, unlinkNow: boolean)");
    }
    std::string name = info[0].As<Napi::String>();
    double value = info[1].As<Napi::Number>().DoubleValue();
    if (!(value >= 0 && value <= SEM_VALUE_MAX)) return ThrowType(info.Env(), "value out of range");
    std::shared_ptr<Sem> sem;
    int err = SemCreate(name.c_str(), static_cast<unsigned>(value), info[2].As<Napi::Boolean>(), &sem);
    if (err != 0) return ThrowErrno(info.Env(), err, "sem_open");
    return Wrap(info, std::move(sem));
  }

  static Napi::Value Open(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsString()) return ThrowType(info.Env(), "open(name: string)");
    std::string name = info[0].As<Napi::String>();
    std::shared_ptr<Sem> sem;
    int err = SemOpen(name.c_str(), &sem);
    if (err != 0) return ThrowErrno(info.Env(), err, "sem_open");
    return Wrap(info, std::move(sem));
  }

  static Napi::Value Unlink(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsString()) return ThrowType(info.Env(), "unlink(name: string)");
    std::string name = info[0].As<Napi::String>();
    int err = SemUnlink(name.c_str());
    if (err != 0) return ThrowErrno(info.Env(), err, "sem_unlink");
    return info.Env().Undefined();
  }

  bool Live(Napi::Env env) {
    if (sem_) return true;
    ThrowErrno(env, EBADF, "semaphore");
    return false;
  }

  Napi::Value TryWait(const Napi::CallbackInfo& info) {
    if (!Live(info.Env())) return info.Env().Undefined();
    int r = SemTryWait(*sem_);
    if (r < 0) return ThrowErrno(info.Env(), -r, "sem_trywait");
    return Napi::Boolean::New(info.Env(), r == 1);
  }

  Napi::Value Post(const Napi::CallbackInfo& info) {
    if (!Live(info.Env())) return info.Env().Undefined();
    int err = SemPost(*sem_);
    if (err != 0) return ThrowErrno(info.Env(), err, "sem_post");
    return info.Env().Undefined();
  }

  Napi::Value GetValue(const Napi::CallbackInfo& info) {
    if (!Live(info.Env())) return info.Env().Undefined();
    int v = 0;
    int err = SemGetValue(*sem_, &v);
    if (err != 0) return ThrowErrno(info.Env(), err, "sem_getvalue");
    return Napi::Number::New(info.Env(), v);
  }

  // wait(timeoutSeconds, jobId?): Promise<boolean>, off the loop.
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    auto deferred = Napi::Promise::Deferred::New(env);
    auto job = std::make_shared<SemWaitJob>(sem_, Deadline(info[0]));
    Run(env, job, JobId(info, 1), [deferred, job](Napi::Env env) {
      if (job->result < 0) {
        deferred.Reject(MakeErrno(env, -job->result, "sem_clockwait").Value());
      } else {
        deferred.Resolve(Napi::Boolean::New(env, job->result == 1));
      }
    });
    return deferred.Promise();
  }

  // waitSync(timeoutSeconds): blocks the calling thread.
  Napi::Value WaitSync(const Napi::CallbackInfo& info) {
    if (!Live(info.Env())) return info.Env().Undefined();
    int r = SemWaitUntil(*sem_, Deadline(info[0]), nullptr);
    if (r < 0) return ThrowErrno(info.Env(), -r, "sem_clockwait");
    return Napi::Boolean::New(info.Env(), r == 1);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    sem_.reset();
    return info.Env().Undefined();
  }

  // The sem_t address, as CPython's SemLock.handle.
  Napi::Value Handle(const Napi::CallbackInfo& info) {
    if (!sem_) return Napi::Number::New(info.Env(), 0);
    return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(sem_->get())));
  }

  // word(): the sem_t's first 8 bytes (see SemWordLayoutOk) as an
  // ArrayBuffer over the shared mapping, which it keeps open; undefined
  // where the layout is not glibc's.
  Napi::Value Word(const Napi::CallbackInfo& info) {
#ifdef BILLIARD_SEM_WORD
    if (!Live(info.Env())) return info.Env().Undefined();
    if (!SemWordLayoutOk()) return info.Env().Undefined();
    auto* keep = new std::shared_ptr<Sem>(sem_);
    return Napi::ArrayBuffer::New(
        info.Env(), static_cast<void*>(sem_->get()), 8, [](Napi::Env, void*, std::shared_ptr<Sem>* k) { delete k; }, keep);
#else
    return info.Env().Undefined();
#endif
  }

  // wake(): what sem_post does after its increment when waiters sleep:
  // FUTEX_WAKE of one, on the value word, shared between processes.
  Napi::Value Wake(const Napi::CallbackInfo& info) {
#ifdef BILLIARD_SEM_WORD
    if (!Live(info.Env())) return info.Env().Undefined();
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(sem_->get()), FUTEX_WAKE, 1, nullptr, nullptr, 0);
#endif
    return info.Env().Undefined();
  }

  std::shared_ptr<Sem> sem_;
};


// ---- frames --------------------------------------------------------------------

bool FdArg(const Napi::CallbackInfo& info, size_t i, int* fd) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  *fd = info[i].As<Napi::Number>().Int32Value();
  return *fd >= 0;
}

// Bytes for JavaScript: copied into a new ArrayBuffer when small (cheaper
// than an external buffer and its finalizer), else handed over.
constexpr size_t kCopyBelow = 64 * 1024;

Napi::Value OwnedBuffer(Napi::Env env, std::vector<uint8_t>&& bytes) {
  if (bytes.size() < kCopyBelow) {
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes.size());
    if (!bytes.empty()) std::memcpy(ab.Data(), bytes.data(), bytes.size());
    return Napi::Uint8Array::New(env, bytes.size(), ab, 0);
  }
  auto* owned = new std::vector<uint8_t>(std::move(bytes));
  return Napi::Buffer<uint8_t>::New(env, owned->data(), owned->size(),
                                    [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, owned);
}

Napi::Value FrameError(Napi::Env env, int negerr) {
  return MakeErrno(env, -negerr, "read").Value();
}

int64_t MaxSizeArg(const Napi::Value& v) {
  double max = v.As<Napi::Number>().DoubleValue();
  return max >= 9.2e18 || !(max >= 0) ? INT64_MAX : static_cast<int64_t>(max);
}

// The rest of a begun frame, on a pool thread: a Promise of its bytes (or
// of null when `deadline` passed before a byte of it came).
Napi::Value FinishFrame(Napi::Env env, int fd, int64_t deadline, int64_t stall, int64_t max_size, FramePart&& part, double id) {
  auto deferred = Napi::Promise::Deferred::New(env);
  auto job = std::make_shared<ReadFrameJob>(fd, deadline, stall, max_size, std::move(part));
  Run(env, job, id, [deferred, job](Napi::Env env) {
    if (job->result == 1) {
      deferred.Resolve(OwnedBuffer(env, std::move(job->part.payload)));
    } else if (job->result == 0) {
      deferred.Resolve(env.Null());
    } else {
      deferred.Reject(FrameError(env, job->result));
    }
  });
  return deferred.Promise();
}

// readFrame(fd, timeoutSeconds, stallSeconds, maxSize, jobId?):
// a Uint8Array when a whole frame was readable at once, else a Promise of
// one, or of null when the timeout passed before a frame began.
Napi::Value ReadFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd) || info.Length() < 4 || !info[3].IsNumber()) {
    return ThrowType(env, "readFrame(fd, timeout, stall, maxSize, jobId?)");
  }
  int64_t max_size = MaxSizeArg(info[3]);
  FramePart part;
  size_t len = 0;
  int r = TakeFrame(fd, max_size, nullptr, 0, &part, &len);
  if (r < 0) return ThrowErrno(env, -r, "read");
  if (r == 1) return OwnedBuffer(env, std::move(part.payload));
  // Once a frame was begun it must be finished: no timeout, no cancelling then.
  bool begun = r == 2;
  return FinishFrame(env, fd, begun ? -1 : Deadline(info[1]), Duration(info[2]), max_size, std::move(part), begun ? 0 : JobId(info, 4));
}

// readNoWait(use?): whether preadv2(RWF_NOWAIT) reads frames; use false
// to read with FIONREAD instead (tests of the fallback).
Napi::Value ReadNoWaitJs(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsBoolean()) SetReadNoWait(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(info.Env(), ReadNoWaitUsed());
}

// takeFrame(fd, scratch: Uint8Array, maxSize, stallSeconds): the frame
// readable now, without a thread: its length when it was read into scratch,
// a Uint8Array when it was longer, null when no frame was there (nothing
// was read), or a Promise of its bytes when it was there only in part (a
// pool thread reads the rest).
Napi::Value TakeFrameJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd) || info.Length() < 4 || !info[1].IsTypedArray() || !info[2].IsNumber()) {
    return ThrowType(env, "takeFrame(fd, scratch, maxSize, stall)");
  }
  Napi::TypedArray t = info[1].As<Napi::TypedArray>();
  if (t.TypedArrayType() != napi_uint8_array) return ThrowType(env, "scratch must be a Uint8Array");
  Napi::Uint8Array scratch = t.As<Napi::Uint8Array>();
  int64_t max_size = MaxSizeArg(info[2]);
  FramePart part;
  size_t len = 0;
  int r = TakeFrame(fd, max_size, scratch.Data(), scratch.ByteLength(), &part, &len);
  if (r < 0) return ThrowErrno(env, -r, "read");
  if (r == 0) return env.Null();
  if (r == 1) return part.whole ? OwnedBuffer(env, std::move(part.payload)) : Napi::Number::New(env, static_cast<double>(len));
  return FinishFrame(env, fd, -1, Duration(info[3]), max_size, std::move(part), 0);
}

// writeBytes(fd, chunks: Uint8Array[], jobId?): true when written at once,
// else a Promise resolved once a pool thread wrote them all. With jobId
// false: true when written at once, false when they do not certainly fit
// now (nothing written, no thread).
Napi::Value WriteBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd) || info.Length() < 2 || !info[1].IsArray()) return ThrowType(env, "writeBytes(fd, chunks[])");
  Napi::Array chunks = info[1].As<Napi::Array>();
  uint32_t n = chunks.Length();
  std::vector<iovec> iov;
  iov.reserve(n);
  size_t total = 0;
  for (uint32_t i = 0; i < n; ++i) {
    Napi::Value c = chunks.Get(i);
    if (!c.IsTypedArray() || c.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      return ThrowType(env, "chunks must be Uint8Arrays");
    }
    Napi::Uint8Array a = c.As<Napi::Uint8Array>();
    iov.push_back({a.Data(), a.ByteLength()});
    total += a.ByteLength();
  }
  int r = TryWrite(fd, iov.data(), static_cast<int>(iov.size()), total);
  if (r < 0) return ThrowErrno(env, -r, "write");
  if (r == 1) return Napi::Boolean::New(env, true);
  if (info.Length() > 2 && info[2].IsBoolean() && !info[2].As<Napi::Boolean>().Value()) return Napi::Boolean::New(env, false);
  std::vector<uint8_t> data(total);
  size_t at = 0;
  for (const iovec& v : iov) {
    std::memcpy(data.data() + at, v.iov_base, v.iov_len);
    at += v.iov_len;
  }
  auto deferred = Napi::Promise::Deferred::New(env);
  auto job = std::make_shared<WriteJob>(fd, std::move(data));
  Run(env, job, JobId(info, 2), [deferred, job](Napi::Env env) {
    if (job->result == 1) {
      deferred.Resolve(env.Undefined());
    } else {
      deferred.Reject(MakeErrno(env, -job->result, "write").Value());
    }
  });
  return deferred.Promise();
}

// pollReadable(fd, timeoutSeconds, jobId?): Promise<boolean>.
Napi::Value PollReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowType(env, "pollReadable(fd, timeout, jobId?)");
  auto deferred = Napi::Promise::Deferred::New(env);
  auto job = std::make_shared<PollJob>(fd, Deadline(info[1]));
  Run(env, job, JobId(info, 2), [deferred, job](Napi::Env env) {
    if (job->result < 0) {
      deferred.Reject(MakeErrno(env, -job->result, "poll").Value());
    } else {
      deferred.Resolve(Napi::Boolean::New(env, job->result == 1));
    }
  });
  return deferred.Promise();
}

Napi::Value ReadableBytes(const Napi::CallbackInfo& info) {
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowType(info.Env(), "readable(fd)");
  int64_t n = Readable(fd);
  if (n < 0) return ThrowErrno(info.Env(), static_cast<int>(-n), "ioctl");
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

// ---- shared memory ---------------------------------------------------------------

struct Mapping {
  void* addr;
  size_t size;
};

Napi::ArrayBuffer MappedBuffer(Napi::Env env, void* addr, size_t size) {
  auto* m = new Mapping{addr, size};
  return Napi::ArrayBuffer::New(
      env, addr, size,
      [](Napi::Env, void*, Mapping* m) {
        Unmap(m->addr, m->size);
        delete m;
      },
      m);
}

bool SizeArg(const Napi::CallbackInfo& info, size_t i, size_t* size) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<uint64_t>(d))) return false;
  *size = static_cast<size_t>(d);
  return true;
}

// createArena(dir, size): { fd, buffer }.
Napi::Value CreateArenaJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t size;
  if (info.Length() < 2 || !info[0].IsString() || !SizeArg(info, 1, &size)) return ThrowType(env, "createArena(dir: string, size: positive integer)");
  std::string dir = info[0].As<Napi::String>();
  int fd = -1;
  void* addr = nullptr;
  int err = CreateArena(dir.c_str(), size, &fd, &addr);
  if (err != 0) return ThrowErrno(env, err, "open/mmap");
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("buffer", MappedBuffer(env, addr, size));
  return out;
}

// mapFd(fd, size): ArrayBuffer.
Napi::Value MapFdJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  size_t size;
  if (!FdArg(info, 0, &fd) || !SizeArg(info, 1, &size)) return ThrowType(env, "mapFd(fd, size: positive integer)");
  void* addr = nullptr;
  int err = MapFd(fd, size, &addr);
  if (err != 0) return ThrowErrno(env, err, "mmap");
  return MappedBuffer(env, addr, size);
}

// unmap(buffer): detaches it; the mapping goes with its finalizer.
Napi::Value UnmapJs(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) return ThrowType(info.Env(), "unmap(buffer: ArrayBuffer)");
  Napi::ArrayBuffer b = info[0].As<Napi::ArrayBuffer>();
  if (!b.IsDetached()) b.Detach();
  return info.Env().Undefined();
}

// ---- descriptor passing ------------------------------------------------------------

Napi::Value SendFdsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock;
  if (!FdArg(info, 0, &sock) || info.Length() < 2 || !info[1].IsArray()) return ThrowType(env, "sendFds(sock, fds[])");
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) return ThrowType(env, "fds must be numbers");
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  int err = SendFds(sock, fds.data(), fds.size());
  if (err != 0) return ThrowErrno(env, err, "sendmsg");
  return env.Undefined();
}

Napi::Value RecvFdsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock;
  if (!FdArg(info, 0, &sock) || info.Length() < 2 || !info[1].IsNumber()) return ThrowType(env, "recvFds(sock, max)");
  std::vector<int> fds;
  int err = RecvFds(sock, static_cast<size_t>(info[1].As<Napi::Number>().Int32Value()), &fds);
  if (err != 0) return ThrowErrno(env, err, "recvmsg");
  Napi::Array out = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); ++i) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
  return out;
}

}  // namespace

void InitSync(Napi::Env env, Napi::Object exports) {
  exports.Set("Semaphore", Semaphore::Define(env));
  exports.Set("SEM_VALUE_MAX", Napi::Number::New(env, SEM_VALUE_MAX));
  exports.Set("cancelJob", Napi::Function::New(env, CancelJob, "cancelJob"));
  exports.Set("readFrame", Napi::Function::New(env, ReadFrame, "readFrame"));
  exports.Set("takeFrame", Napi::Function::New(env, TakeFrameJs, "takeFrame"));
  exports.Set("readNoWait", Napi::Function::New(env, ReadNoWaitJs, "readNoWait"));
  exports.Set("writeBytes", Napi::Function::New(env, WriteBytes, "writeBytes"));
  exports.Set("pollReadable", Napi::Function::New(env, PollReadable, "pollReadable"));
  exports.Set("readable", Napi::Function::New(env, ReadableBytes, "readable"));
  exports.Set("createArena", Napi::Function::New(env, CreateArenaJs, "createArena"));
  exports.Set("mapFd", Napi::Function::New(env, MapFdJs, "mapFd"));
  exports.Set("unmap", Napi::Function::New(env, UnmapJs, "unmap"));
  exports.Set("sendFds", Napi::Function::New(env, SendFdsJs, "sendFds"));
  exports.Set("recvFds", Napi::Function::New(env, RecvFdsJs, "recvFds"));
}

}  // namespace billiard
