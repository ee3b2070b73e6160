// The Node binding of native/posix.h: argument checks and conversions only.
// Policy (defaults, seconds, error classes) lives in src/native/index.ts.
#include <napi.h>

#include "handshake_binding.h"
#include "posix.h"
#include "sync_binding.h"

namespace {

Napi::Value ErrnoError(Napi::Env env, int err, const char* call) {
  Napi::Error e = Napi::Error::New(env, std::string(call) + " failed: " + strerror(err));
  e.Set("code", Napi::String::New(env, billiard::ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, call));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value FdPair(const Napi::CallbackInfo& info, int (*make)(int[2]), const char* call) {
  int fds[2];
  int err = make(fds);
  if (err != 0) return ErrnoError(info.Env(), err, call);
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, Napi::Number::New(info.Env(), fds[0]));
  out.Set(1u, Napi::Number::New(info.Env(), fds[1]));
  return out;
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) { return FdPair(info, billiard::SocketPair, "socketpair"); }

Napi::Value Pipe(const Napi::CallbackInfo& info) { return FdPair(info, billiard::Pipe, "pipe2"); }

bool PathArg(const Napi::CallbackInfo& info, Napi::Uint8Array* out) {
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(info.Env(), "path must be a Uint8Array").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[0].As<Napi::Uint8Array>();
  return true;
}

Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Uint8Array path;
  if (!PathArg(info, &path)) return info.Env().Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    Napi::TypeError::New(info.Env(), "backlog must be a number").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  int fd = -1;
  int err = billiard::UnixListen(path.Data(), path.ByteLength(), info[1].As<Napi::Number>().Int32Value(), &fd);
  if (err != 0) return ErrnoError(info.Env(), err, "bind/listen");
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Uint8Array path;
  if (!PathArg(info, &path)) return info.Env().Undefined();
  int fd = -1;
  bool in_progress = false;
  int err = billiard::UnixConnect(path.Data(), path.ByteLength(), &fd, &in_progress);
  if (err != 0) return ErrnoError(info.Env(), err, "connect");
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("fd", Napi::Number::New(info.Env(), fd));
  out.Set("inProgress", Napi::Boolean::New(info.Env(), in_progress));
  return out;
}

Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(info.Env(), "signal must be a number").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  int err = billiard::SetParentDeathSignal(info[0].As<Napi::Number>().Int32Value());
  if (err != 0) return ErrnoError(info.Env(), err, "prctl");
  return info.Env().Undefined();
}

Napi::Value ParentPid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), billiard::ParentPid()); }

Napi::Value SetBlocking(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) {
    Napi::TypeError::New(info.Env(), "setBlocking(fd: number, blocking: boolean)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  int err = billiard::SetBlocking(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Boolean>().Value());
  if (err != 0) return ErrnoError(info.Env(), err, "fcntl");
  return info.Env().Undefined();
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(info.Env(), "dup(fd: number)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  int copy = -1;
  int err = billiard::DupCloexec(info[0].As<Napi::Number>().Int32Value(), &copy);
  if (err != 0) return ErrnoError(info.Env(), err, "fcntl");
  return Napi::Number::New(info.Env(), copy);
}

Napi::Value FdLimit(const Napi::CallbackInfo& info) {
  int64_t limit = 0;
  int err = billiard::FdLimit(&limit);
  if (err != 0) return ErrnoError(info.Env(), err, "getrlimit");
  return Napi::Number::New(info.Env(), static_cast<double>(limit));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("fdLimit", Napi::Function::New(env, FdLimit, "fdLimit"));
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal, "setParentDeathSignal"));
  exports.Set("parentPid", Napi::Function::New(env, ParentPid, "parentPid"));
  exports.Set("setBlocking", Napi::Function::New(env, SetBlocking, "setBlocking"));
  exports.Set("dup", Napi::Function::New(env, Dup, "dup"));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  billiard::InitSync(env, exports);
  billiard::InitHandshake(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(billiard_native, Init)
