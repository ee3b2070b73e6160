// The authkey handshake of multiprocessing.connection (src/connection/
// handshake.ts has the protocol and its rules) as a state machine on a
// non-blocking socket, driven by the event loop's readiness events
// (native/handshake_binding.cc) without a call into JavaScript per frame.
// On the JavaScript side each of its six frames costs a trip through
// Node's stream machinery; here a frame costs what it costs CPython: a
// wake-up, a recv and a send.
//
// The machine reads exactly the frames of the handshake, never a byte past
// them: whatever the peer sends next stays in the socket for the
// connection that takes it over.
//
// HMAC comes from the OpenSSL that Node carries, looked up at run time: a
// Node without those symbols gets HandshakeAvailable() false, and the
// JavaScript handshake runs instead.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

namespace billiard {

// Whether the OpenSSL functions the handshake needs were found.
bool HandshakeAvailable();

// How a handshake ended. The JavaScript side turns each into the error the
// JavaScript handshake throws for the same peer behaviour.
enum class HandshakeOutcome : int {
  kOk = 0,
  kEof = 1,                // end of file before a frame
  kTruncated = 2,          // end of file inside a frame
  kTooLong = 3,            // a frame header over the limit: n
  kNegativeLength = 4,     // a negative 32-bit length other than -1: n
  kHugeLength = 5,         // a 64-bit length of 2**53 or more
  kErrno = 6,              // a failed call: err, syscall
  // 7 is not used: the JavaScript side times a handshake, and stops it.
  kCancelled = 8,          // stopped before its end
  kExpectedChallenge = 9,  // the first frame is not #CHALLENGE#...: bytes
  kChallengeShort = 10,    // a challenge under 20 bytes: n
  kBadDigest = 11,         // no known digest in a message: bytes
  kDigestLength = 12,      // a MAC of the wrong size: name, n (expected), got
  kWrongDigest = 13,       // a MAC that does not match
  kRejected = 14,          // the peer's verdict was not #WELCOME#
  kConnect = 15,           // connect() failed: err
};

class HandshakeMachine {
 public:
  // client: answer the peer's challenge, then deliver ours (Client());
  // otherwise deliver then answer (Listener). challenge: the message our
  // challenge carries after #CHALLENGE# ({digest} + 40 random bytes, or 20
  // random bytes for the legacy form). fd: a connected non-blocking socket,
  // or -1 with ConnectTo() for one the machine makes.
  HandshakeMachine(int fd, bool client, std::vector<uint8_t> authkey, std::vector<uint8_t> challenge);

  // Connects to an IPv4 address first (a non-blocking, close-on-exec TCP
  // socket with TCP_NODELAY, as Client() makes): false with the outcome
  // set when the socket cannot be made.
  bool ConnectTo(uint32_t ipv4_be, uint16_t port_be);

  enum class Want { kDone, kRead, kWrite };
  // Goes as far as it can without blocking: kDone (see outcome), or what
  // the socket must become before the next call.
  Want Advance();

  int fd() const { return fd_; }
  // Still waiting for its connect to complete.
  bool Connecting() const { return step_ == Step::kConnecting; }

  HandshakeOutcome outcome = HandshakeOutcome::kOk;
  int64_t n = 0;
  int64_t got = 0;
  int err = 0;
  const char* syscall = "";
  std::string name;
  std::vector<uint8_t> bytes;

 private:
  enum class Step { kConnecting, kSendChallenge, kReadResponse, kReadChallenge, kReadVerdict, kFlushThenFail, kDone };
  // One of the two halves ends: the next step, or kDone.
  Step AfterHalf(bool delivered);
  // Reads into frame_ without blocking: 1 the frame is whole, 0 not yet,
  // -1 failed (outcome set).
  int ReadFrame();
  // Queues a frame for writing.
  void QueueFrame(const uint8_t* data, size_t len);
  // Writes what is queued: true when all is written (false: would block, or
  // a failure, with outcome set).
  bool Flush(bool* failed);
  HandshakeOutcome OnChallenge();
  HandshakeOutcome OnResponse();
  HandshakeOutcome Fail(HandshakeOutcome o) { return outcome = o; }
  HandshakeOutcome FailErrno(int e, const char* call) {
    err = e;
    syscall = call;
    return Fail(HandshakeOutcome::kErrno);
  }

  int fd_;
  bool client_;
  std::vector<uint8_t> authkey_;
  std::vector<uint8_t> challenge_;
  Step step_;
  bool delivered_ = false;  // our challenge's half is done
  bool answered_ = false;   // the peer's challenge's half is done
  HandshakeOutcome pending_failure_ = HandshakeOutcome::kOk;
  // The frame being read: header bytes, then the payload.
  uint8_t header_[12];
  size_t header_have_ = 0;
  int64_t length_ = -1;
  std::vector<uint8_t> frame_;
  size_t frame_have_ = 0;
  // Bytes queued for writing.
  std::vector<uint8_t> out_;
  size_t out_done_ = 0;
};

}  // namespace billiard
