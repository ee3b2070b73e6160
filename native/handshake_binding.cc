// The Node binding of native/handshake.h: a HandshakeMachine runs on the
// event loop's thread, woken by a uv_poll_t on its socket. The descriptor
// may belong to a net.Socket whose handle has never started reading (libuv
// has no watcher on it then); the poll handle is closed, and its watcher
// gone, before JavaScript hears of the end, so that the socket's own
// handle can start reading. JavaScript hears of the handshake once, when
// it ends.
#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <unordered_map>

#include "handshake.h"
#include "handshake_binding.h"
#include "posix.h"

namespace billiard {

namespace {

struct State;

struct Active {
  Active(napi_env env, State* s) : deferred(Napi::Promise::Deferred::New(env)), state(s) {}
  uv_poll_t poll;
  std::unique_ptr<HandshakeMachine> machine;
  Napi::Promise::Deferred deferred;
  State* state;
  double id = 0;
  bool polling = false;  // poll is initialized (it must be closed)
  bool own_fd = false;   // the machine made the socket: closed here if the handshake fails
};

// Per environment (the main thread, or a worker thread).
struct State {
  napi_env env = nullptr;
  napi_async_context context = nullptr;
  std::unordered_map<double, Active*> active;
};

std::mutex g_states_mutex;
std::unordered_map<napi_env, State*>& States() {
  static auto* states = new std::unordered_map<napi_env, State*>();
  return *states;
}

// Stops watching the socket (at once: libuv forgets the descriptor in
// uv_close) and frees `a` (once the handle is closed).
void CloseActive(Active* a) {
  if (!a->polling) {
    delete a;
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&a->poll), [](uv_handle_t* h) { delete static_cast<Active*>(h->data); });
}

void Cleanup(void* arg) {
  State* s = static_cast<State*>(arg);
  {
    std::lock_guard<std::mutex> lock(g_states_mutex);
    States().erase(s->env);
  }
  for (auto& [id, a] : s->active) {
    (void)id;
    const int fd = a->own_fd ? a->machine->fd() : -1;
    CloseActive(a);
    if (fd >= 0) close(fd);
  }
  s->active.clear();
  if (s->context != nullptr) napi_async_destroy(s->env, s->context);
  delete s;
}

State* StateFor(Napi::Env env) {
  {
    std::lock_guard<std::mutex> lock(g_states_mutex);
    auto it = States().find(env);
    if (it != States().end()) return it->second;
  }
  auto* s = new State();
  s->env = env;
  napi_async_init(env, nullptr, Napi::String::New(env, "billiard-ts:handshake"), &s->context);
  napi_add_env_cleanup_hook(env, Cleanup, s);
  std::lock_guard<std::mutex> lock(g_states_mutex);
  States()[env] = s;
  return s;
}

// The socket's descriptor on success; else what went wrong.
Napi::Value Result(Napi::Env env, HandshakeMachine& m) {
  if (m.outcome == HandshakeOutcome::kOk) return Napi::Number::New(env, m.fd());
  Napi::Object r = Napi::Object::New(env);
  r.Set("outcome", Napi::Number::New(env, static_cast<int>(m.outcome)));
  r.Set("fd", Napi::Number::New(env, m.fd()));
  r.Set("n", Napi::Number::New(env, static_cast<double>(m.n)));
  r.Set("got", Napi::Number::New(env, static_cast<double>(m.got)));
  r.Set("errno", Napi::Number::New(env, m.err));
  r.Set("code", Napi::String::New(env, m.err == 0 ? "" : ErrnoName(m.err)));
  r.Set("syscall", Napi::String::New(env, m.syscall));
  r.Set("name", Napi::String::New(env, m.name));
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, m.bytes.size());
  if (!m.bytes.empty()) std::memcpy(ab.Data(), m.bytes.data(), m.bytes.size());
  r.Set("bytes", Napi::Uint8Array::New(env, m.bytes.size(), ab, 0));
  return r;
}

// The handshake ended (or was stopped): settle its promise and let go of
// the poll handle. `from_loop`: called from a libuv callback, where the
// promise's reactions must be run before returning to the loop.
void Finish(Active* a, bool from_loop) {
  State* s = a->state;
  if (a->id != 0) s->active.erase(a->id);
  HandshakeMachine& m = *a->machine;
  Napi::Env env(s->env);
  Napi::HandleScope scope(env);
  Napi::Value result = Result(env, m);
  Napi::Promise::Deferred deferred = a->deferred;
  const int close_fd = a->own_fd && m.outcome != HandshakeOutcome::kOk ? m.fd() : -1;
  CloseActive(a);  // `a` may be gone from here on
  if (close_fd >= 0) close(close_fd);
  if (from_loop) {
    napi_callback_scope cb = nullptr;
    napi_value resource = Napi::Object::New(env);
    napi_open_callback_scope(env, resource, s->context, &cb);
    deferred.Resolve(result);
    napi_close_callback_scope(env, cb);  // runs the reactions (and nextTicks)
  } else {
    deferred.Resolve(result);
  }
}

int EventsFor(HandshakeMachine::Want w) { return w == HandshakeMachine::Want::kRead ? UV_READABLE : UV_WRITABLE; }

void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  Active* a = static_cast<Active*>(handle->data);
  HandshakeMachine& m = *a->machine;
  // libuv reports POLLERR (a reset, a refused connect) as UV_EBADF: the
  // machine's next recv, send or SO_ERROR names the real error.
  HandshakeMachine::Want w = m.Advance();
  if (w == HandshakeMachine::Want::kDone) {
    Finish(a, true);
    return;
  }
  if (status >= 0) status = uv_poll_start(&a->poll, EventsFor(w), OnPoll);
  if (status < 0) {
    m.err = -status;
    m.syscall = "poll";
    m.outcome = HandshakeOutcome::kErrno;
    Finish(a, true);
  }
}

bool BytesArg(const Napi::Value& v, std::vector<uint8_t>* out) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return false;
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  out->assign(a.Data(), a.Data() + a.ByteLength());
  return true;
}

Napi::Value ThrowType(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

constexpr const char* kUsage = "handshake(fd | [ipv4, port], client: boolean, authkey, challenge, jobId, hold)";

// handshake(fd | [dotted IPv4, port], client, authkey, challenge, jobId, hold):
// a Promise of the socket's descriptor, or of { outcome, fd, n, got,
// errno, code, syscall, name, bytes } when it failed (outcome is a
// HandshakeOutcome, for src/connection/handshake.ts to turn into its
// errors). With a target
// instead of a descriptor the socket is made and connected here; fd is
// then the new socket's (closed here if the handshake failed). The socket
// must not be read by anyone else until the promise settles. hold false:
// the wait does not keep the loop alive. cancelHandshake(jobId) stops it
// at once (outcome 8).
Napi::Value Handshake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  in_addr ip{};
  int port = -1;
  if (info.Length() > 0 && info[0].IsArray()) {
    Napi::Array target = info[0].As<Napi::Array>();
    Napi::Value host = target.Get(0u);
    Napi::Value p = target.Get(1u);
    if (!host.IsString() || !p.IsNumber() || inet_pton(AF_INET, host.As<Napi::String>().Utf8Value().c_str(), &ip) != 1) {
      return ThrowType(env, "handshake target must be [dotted IPv4 address, port]");
    }
    port = p.As<Napi::Number>().Int32Value();
    if (port < 0 || port > 65535) return ThrowType(env, "port out of range");
  } else if (info.Length() > 0 && info[0].IsNumber()) {
    fd = info[0].As<Napi::Number>().Int32Value();
    if (fd < 0) return ThrowType(env, kUsage);
  } else {
    return ThrowType(env, kUsage);
  }
  std::vector<uint8_t> key;
  std::vector<uint8_t> challenge;
  if (info.Length() < 6 || !info[1].IsBoolean() || !BytesArg(info[2], &key) || !BytesArg(info[3], &challenge) || !info[4].IsNumber()) {
    return ThrowType(env, kUsage);
  }
  if (challenge.size() > 200) return ThrowType(env, "challenge too long");
  State* s = StateFor(env);
  auto* a = new Active(env, s);
  Napi::Promise promise = a->deferred.Promise();
  a->machine = std::make_unique<HandshakeMachine>(fd, info[1].As<Napi::Boolean>().Value(), std::move(key), std::move(challenge));
  if (port >= 0) {
    a->own_fd = true;
    a->machine->ConnectTo(ip.s_addr, htons(static_cast<uint16_t>(port)));
  }
  HandshakeMachine::Want w = a->machine->Advance();
  if (w == HandshakeMachine::Want::kDone) {
    Finish(a, false);
    return promise;
  }
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  int r = uv_poll_init(loop, &a->poll, a->machine->fd());
  if (r == 0) {
    a->polling = true;
    a->poll.data = a;
    r = uv_poll_start(&a->poll, EventsFor(w), OnPoll);
  }
  if (r != 0) {
    a->machine->err = -r;
    a->machine->syscall = "poll";
    a->machine->outcome = HandshakeOutcome::kErrno;
    Finish(a, false);
    return promise;
  }
  if (!info[5].IsBoolean() || info[5].As<Napi::Boolean>().Value()) {
    // held: the loop stays alive while the handshake waits
  } else {
    uv_unref(reinterpret_cast<uv_handle_t*>(&a->poll));
  }
  a->id = info[4].As<Napi::Number>().DoubleValue();
  if (a->id != 0) s->active[a->id] = a;
  return promise;
}

// cancelHandshake(jobId): stops a running handshake at once (its promise
// resolves with outcome 8, and its socket is no longer used): 1 if it was
// still connecting, 2 if it was in the handshake, 0 if none runs under
// that id.
Napi::Value CancelHandshake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "cancelHandshake(jobId)");
  State* s = StateFor(env);
  auto it = s->active.find(info[0].As<Napi::Number>().DoubleValue());
  if (it == s->active.end()) return Napi::Number::New(env, 0);
  Active* a = it->second;
  const bool connecting = a->machine->Connecting();
  a->machine->outcome = HandshakeOutcome::kCancelled;
  Finish(a, false);
  return Napi::Number::New(env, connecting ? 1 : 2);
}

Napi::Value Available(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), HandshakeAvailable()); }

}  // namespace

void InitHandshake(Napi::Env env, Napi::Object exports) {
  exports.Set("handshake", Napi::Function::New(env, Handshake, "handshake"));
  exports.Set("cancelHandshake", Napi::Function::New(env, CancelHandshake, "cancelHandshake"));
  exports.Set("handshakeAvailable", Napi::Function::New(env, Available, "handshakeAvailable"));
}

}  // namespace billiard
