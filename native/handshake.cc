#include "handshake.h"

#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace billiard {

namespace {

// The OpenSSL calls, found in the running process (Node exports its
// OpenSSL's symbols; a Node linked to a shared libcrypto has it loaded).
// Each digest is fetched once (EVP_MD_fetch, OpenSSL 3): HMAC() and the
// legacy EVP_md5() make OpenSSL 3 look the algorithm up again on every
// call, a few microseconds each.
using MdFn = const void* (*)();
using MdFetchFn = void* (*)(void* libctx, const char* algorithm, const char* properties);
using HmacNewFn = void* (*)();
using HmacFreeFn = void (*)(void* ctx);
using HmacInitFn = int (*)(void* ctx, const void* key, int key_len, const void* md, void* engine);
using HmacUpdateFn = int (*)(void* ctx, const unsigned char* data, size_t len);
using HmacFinalFn = int (*)(void* ctx, unsigned char* out, unsigned int* out_len);

struct Digest {
  const char* name;    // CPython's name, as in the {name} prefix
  const char* fetch;   // OpenSSL 3's algorithm name
  const char* legacy;  // the EVP_* function of older OpenSSLs
  size_t size;
  const void* md = nullptr;
};

struct Crypto {
  HmacNewFn hmac_new = nullptr;
  HmacFreeFn hmac_free = nullptr;
  HmacInitFn hmac_init = nullptr;
  HmacUpdateFn hmac_update = nullptr;
  HmacFinalFn hmac_final = nullptr;
  Digest digests[5] = {
      {"md5", "MD5", "EVP_md5", 16},
      {"sha256", "SHA256", "EVP_sha256", 32},
      {"sha384", "SHA384", "EVP_sha384", 48},
      {"sha3_256", "SHA3-256", "EVP_sha3_256", 32},
      {"sha3_384", "SHA3-384", "EVP_sha3_384", 48},
  };
  bool ok = false;
};

template <typename F>
F Symbol(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

const Crypto& TheCrypto() {
  static const Crypto crypto = [] {
    Crypto c;
    c.hmac_new = Symbol<HmacNewFn>("HMAC_CTX_new");
    c.hmac_free = Symbol<HmacFreeFn>("HMAC_CTX_free");
    c.hmac_init = Symbol<HmacInitFn>("HMAC_Init_ex");
    c.hmac_update = Symbol<HmacUpdateFn>("HMAC_Update");
    c.hmac_final = Symbol<HmacFinalFn>("HMAC_Final");
    bool ok = c.hmac_new != nullptr && c.hmac_free != nullptr && c.hmac_init != nullptr && c.hmac_update != nullptr && c.hmac_final != nullptr;
    auto fetch = Symbol<MdFetchFn>("EVP_MD_fetch");
    for (Digest& d : c.digests) {
      if (fetch != nullptr) d.md = fetch(nullptr, d.fetch, nullptr);  // kept for the process's life
      if (d.md == nullptr) {
        auto legacy = Symbol<MdFn>(d.legacy);
        if (legacy != nullptr) d.md = legacy();
      }
      ok = ok && d.md != nullptr;
    }
    c.ok = ok;
    return c;
  }();
  return crypto;
}

const Digest* FindDigest(const uint8_t* name, size_t len) {
  for (const Digest& d : TheCrypto().digests) {
    if (std::strlen(d.name) == len && std::memcmp(d.name, name, len) == 0) return &d;
  }
  return nullptr;
}

const Digest* Md5() { return &TheCrypto().digests[0]; }

bool Mac(const Digest* d, const std::vector<uint8_t>& key, const uint8_t* data, size_t len, std::vector<uint8_t>* out) {
  static const uint8_t kEmpty = 0;
  const Crypto& c = TheCrypto();
  void* ctx = c.hmac_new();
  if (ctx == nullptr) return false;
  unsigned char buf[64];
  unsigned int n = 0;
  const void* k = key.empty() ? static_cast<const void*>(&kEmpty) : static_cast<const void*>(key.data());
  bool ok = c.hmac_init(ctx, k, static_cast<int>(key.size()), d->md, nullptr) == 1 && c.hmac_update(ctx, data, len) == 1 && c.hmac_final(ctx, buf, &n) == 1 &&
            n == d->size;
  c.hmac_free(ctx);
  if (ok) out->assign(buf, buf + n);
  return ok;
}

// CPython 3.12's _get_digest_name_and_payload: a 16- or 20-byte message is
// legacy MD5; else {name} within the first 10 bytes, a name it allows.
const Digest* ParseDigest(const std::vector<uint8_t>& message, size_t* payload_at) {
  if (message.size() == 16 || message.size() == 20) {
    *payload_at = 0;
    return Md5();
  }
  if (!message.empty() && message[0] == '{') {
    const size_t limit = std::min<size_t>(message.size(), 10);  // the longest name (8) + 2
    for (size_t i = 1; i < limit; ++i) {
      if (message[i] != '}') continue;
      if (i == 1) break;
      const Digest* d = FindDigest(message.data() + 1, i - 1);
      if (d == nullptr) break;
      *payload_at = i + 1;
      return d;
    }
  }
  return nullptr;
}

bool ConstantTimeEqual(const uint8_t* a, const uint8_t* b, size_t n) {
  uint8_t diff = 0;
  for (size_t i = 0; i < n; ++i) diff |= a[i] ^ b[i];
  return diff == 0;
}

const uint8_t kChallenge[] = {'#', 'C', 'H', 'A', 'L', 'L', 'E', 'N', 'G', 'E', '#'};
const uint8_t kWelcome[] = {'#', 'W', 'E', 'L', 'C', 'O', 'M', 'E', '#'};
const uint8_t kFailure[] = {'#', 'F', 'A', 'I', 'L', 'U', 'R', 'E', '#'};
constexpr int64_t kMaxLength = 256;  // every handshake frame, as in handshake.ts

}  // namespace

bool HandshakeAvailable() { return TheCrypto().ok; }

HandshakeMachine::HandshakeMachine(int fd, bool client, std::vector<uint8_t> authkey, std::vector<uint8_t> challenge)
    : fd_(fd), client_(client), authkey_(std::move(authkey)), challenge_(std::move(challenge)) {
  step_ = client_ ? Step::kReadChallenge : Step::kSendChallenge;
  if (!HandshakeAvailable()) {
    FailErrno(ENOSYS, "HMAC");
    step_ = Step::kDone;
  }
}

bool HandshakeMachine::ConnectTo(uint32_t ipv4_be, uint16_t port_be) {
  if (step_ == Step::kDone) return false;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    FailErrno(errno, "socket");
    step_ = Step::kDone;
    return false;
  }
  fd_ = fd;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = port_be;
  sa.sin_addr.s_addr = ipv4_be;
  int r;
  do {
    r = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  } while (r < 0 && errno == EINTR);
  if (r < 0 && errno == EINPROGRESS) {
    step_ = Step::kConnecting;
  } else if (r < 0) {
    err = errno;
    syscall = "connect";
    Fail(HandshakeOutcome::kConnect);
    step_ = Step::kDone;
  }
  return true;
}

int HandshakeMachine::ReadFrame() {
  // Exactly the frame's bytes: its header, then its payload.
  for (;;) {
    size_t want;
    uint8_t* into;
    if (length_ < 0) {
      const bool long_form = header_have_ >= 4 && header_[0] == 0xff && header_[1] == 0xff && header_[2] == 0xff && header_[3] == 0xff;
      want = (long_form ? 12 : 4) - header_have_;
      into = header_ + header_have_;
    } else {
      want = static_cast<size_t>(length_) - frame_have_;
      into = frame_.data() + frame_have_;
    }
    if (want > 0) {
      ssize_t r = recv(fd_, into, want, MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        FailErrno(errno, "read");
        return -1;
      }
      if (r == 0) {
        Fail(header_have_ == 0 ? HandshakeOutcome::kEof : HandshakeOutcome::kTruncated);
        return -1;
      }
      if (length_ < 0) header_have_ += static_cast<size_t>(r);
      else frame_have_ += static_cast<size_t>(r);
      if (static_cast<size_t>(r) < want) continue;
    }
    if (length_ >= 0) return 1;  // the payload is whole
    // A header is whole: 4 bytes, or 12 for the -1 long form.
    const int32_t n32 = static_cast<int32_t>((uint32_t{header_[0]} << 24) | (uint32_t{header_[1]} << 16) | (uint32_t{header_[2]} << 8) | header_[3]);
    if (n32 == -1 && header_have_ < 12) continue;
    int64_t len = n32;
    if (n32 == -1) {
      const uint32_t hi = (uint32_t{header_[4]} << 24) | (uint32_t{header_[5]} << 16) | (uint32_t{header_[6]} << 8) | header_[7];
      const uint32_t lo = (uint32_t{header_[8]} << 24) | (uint32_t{header_[9]} << 16) | (uint32_t{header_[10]} << 8) | header_[11];
      if (hi >= 0x200000) {
        Fail(HandshakeOutcome::kHugeLength);
        return -1;
      }
      len = (static_cast<int64_t>(hi) << 32) | lo;
    } else if (n32 < 0) {
      n = n32;
      Fail(HandshakeOutcome::kNegativeLength);
      return -1;
    }
    if (len > kMaxLength) {
      n = len;
      Fail(HandshakeOutcome::kTooLong);
      return -1;
    }
    length_ = len;
    frame_.assign(static_cast<size_t>(len), 0);
    frame_have_ = 0;
    if (len == 0) return 1;
  }
}

void HandshakeMachine::QueueFrame(const uint8_t* data, size_t len) {
  const uint32_t n32 = static_cast<uint32_t>(len);
  const uint8_t header[4] = {static_cast<uint8_t>(n32 >> 24), static_cast<uint8_t>(n32 >> 16), static_cast<uint8_t>(n32 >> 8), static_cast<uint8_t>(n32)};
  out_.insert(out_.end(), header, header + 4);
  out_.insert(out_.end(), data, data + len);
}

bool HandshakeMachine::Flush(bool* failed) {
  while (out_done_ < out_.size()) {
    ssize_t w = send(fd_, out_.data() + out_done_, out_.size() - out_done_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0) {
      out_done_ += static_cast<size_t>(w);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return false;
    } else if (errno != EINTR) {
      *failed = true;
      FailErrno(errno, "write");
      return false;
    }
  }
  out_.clear();
  out_done_ = 0;
  return true;
}

// answer_challenge, first part: the peer's challenge, our MAC of it.
HandshakeOutcome HandshakeMachine::OnChallenge() {
  const std::vector<uint8_t>& frame = frame_;
  if (frame.size() < sizeof kChallenge || std::memcmp(frame.data(), kChallenge, sizeof kChallenge) != 0) {
    bytes = frame;
    return Fail(HandshakeOutcome::kExpectedChallenge);
  }
  std::vector<uint8_t> message(frame.begin() + sizeof kChallenge, frame.end());
  if (message.size() < 20) {
    n = static_cast<int64_t>(message.size());
    return Fail(HandshakeOutcome::kChallengeShort);
  }
  std::vector<uint8_t> mac;
  if (message.size() == 20) {
    if (!Mac(Md5(), authkey_, message.data(), message.size(), &mac)) return FailErrno(EINVAL, "HMAC");
    QueueFrame(mac.data(), mac.size());
    return HandshakeOutcome::kOk;
  }
  size_t at = 0;
  const Digest* d = ParseDigest(message, &at);
  if (d == nullptr) {
    bytes = std::move(message);
    return Fail(HandshakeOutcome::kBadDigest);
  }
  if (!Mac(d, authkey_, message.data(), message.size(), &mac)) return FailErrno(EINVAL, "HMAC");
  std::vector<uint8_t> response{'{'};
  response.insert(response.end(), d->name, d->name + std::strlen(d->name));
  response.push_back('}');
  response.insert(response.end(), mac.begin(), mac.end());
  QueueFrame(response.data(), response.size());
  return HandshakeOutcome::kOk;
}

// deliver_challenge, second part: the peer's MAC of our challenge, our verdict.
HandshakeOutcome HandshakeMachine::OnResponse() {
  const std::vector<uint8_t>& response = frame_;
  size_t at = 0;
  const Digest* d = ParseDigest(response, &at);
  std::vector<uint8_t> expected;
  HandshakeOutcome verdict = HandshakeOutcome::kOk;
  if (d == nullptr) {
    bytes = response;
    verdict = HandshakeOutcome::kBadDigest;
  } else if (!Mac(d, authkey_, challenge_.data(), challenge_.size(), &expected)) {
    return FailErrno(EINVAL, "HMAC");
  } else if (response.size() - at != d->size) {
    name = d->name;
    n = static_cast<int64_t>(d->size);
    got = static_cast<int64_t>(response.size() - at);
    verdict = HandshakeOutcome::kDigestLength;
  } else if (!ConstantTimeEqual(response.data() + at, expected.data(), d->size)) {
    verdict = HandshakeOutcome::kWrongDigest;
  }
  QueueFrame(verdict == HandshakeOutcome::kOk ? kWelcome : kFailure, sizeof kWelcome);
  return verdict;
}

HandshakeMachine::Step HandshakeMachine::AfterHalf(bool delivered) {
  if (delivered) delivered_ = true;
  else answered_ = true;
  if (!answered_) return Step::kReadChallenge;
  if (!delivered_) return Step::kSendChallenge;
  return Step::kDone;
}

HandshakeMachine::Want HandshakeMachine::Advance() {
  for (;;) {
    if (!out_.empty()) {
      bool failed = false;
      if (!Flush(&failed)) {
        if (!failed) return Want::kWrite;
        // As the JavaScript side: a #FAILURE# the peer does not take is not an error of its own.
        if (step_ == Step::kFlushThenFail) {
          Fail(pending_failure_);
          err = 0;
          syscall = "";
        }
        step_ = Step::kDone;
        return Want::kDone;
      }
    }
    switch (step_) {
      case Step::kConnecting: {
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &e, &len) < 0) e = errno;
        if (e == EINPROGRESS || e == EALREADY) return Want::kWrite;
        if (e != 0) {
          err = e;
          syscall = "connect";
          Fail(HandshakeOutcome::kConnect);
          step_ = Step::kDone;
          return Want::kDone;
        }
        step_ = client_ ? Step::kReadChallenge : Step::kSendChallenge;
        continue;
      }
      case Step::kSendChallenge: {
        std::vector<uint8_t> frame(kChallenge, kChallenge + sizeof kChallenge);
        frame.insert(frame.end(), challenge_.begin(), challenge_.end());
        QueueFrame(frame.data(), frame.size());
        step_ = Step::kReadResponse;
        continue;
      }
      case Step::kReadResponse:
      case Step::kReadChallenge:
      case Step::kReadVerdict: {
        int r = ReadFrame();
        if (r == 0) return Want::kRead;
        if (r < 0) {
          step_ = Step::kDone;
          return Want::kDone;
        }
        length_ = -1;
        header_have_ = 0;
        if (step_ == Step::kReadResponse) {
          HandshakeOutcome v = OnResponse();
          if (v == HandshakeOutcome::kErrno) {
            step_ = Step::kDone;
            return Want::kDone;
          }
          if (v != HandshakeOutcome::kOk) {
            pending_failure_ = v;
            step_ = Step::kFlushThenFail;
            continue;
          }
          step_ = AfterHalf(true);
        } else if (step_ == Step::kReadChallenge) {
          if (OnChallenge() != HandshakeOutcome::kOk) {
            step_ = Step::kDone;
            return Want::kDone;
          }
          step_ = Step::kReadVerdict;
        } else {
          if (frame_.size() != sizeof kWelcome || std::memcmp(frame_.data(), kWelcome, sizeof kWelcome) != 0) {
            Fail(HandshakeOutcome::kRejected);
            step_ = Step::kDone;
            return Want::kDone;
          }
          step_ = AfterHalf(false);
          // A listener's last frame is the client's #WELCOME#, and the client's first request follows it
          // at once. A client with Nagle's algorithm on (billiard's) holds that request until #WELCOME# is
          // acknowledged, and the kernel delays the acknowledgement (40 ms) while this side has nothing
          // to send: acknowledge it now. (Not a TCP socket: nothing to do.)
          if (step_ == Step::kDone && !client_) {
            int one = 1;
            setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
          }
        }
        continue;
      }
      case Step::kFlushThenFail:
        Fail(pending_failure_);
        step_ = Step::kDone;
        return Want::kDone;
      case Step::kDone:
        return Want::kDone;
    }
  }
}

}  // namespace billiard
