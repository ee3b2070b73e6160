/**
 * The authkey handshake of `multiprocessing.connection` in both its forms
 * (spec/connection.md section 4): the HMAC-MD5 challenge of billiard and
 * CPython <= 3.11, and the `{digest}` form of CPython 3.12+.
 *
 * One handshake is six frames, each read with a 256-byte limit:
 *
 *   #  direction  frame
 *   1  S -> C     #CHALLENGE# + M          M = {sha256} + 40 random bytes (modern)
 *                                           or 20 random bytes (legacy)
 *   2  C -> S     response                 HMAC-MD5(key, M) raw (16 bytes) for a
 *                                           20-byte M, else {name} + HMAC-name(key, M)
 *   3  S -> C     #WELCOME# | #FAILURE#
 *   4-6           the same with the roles swapped
 *
 * `Listener.accept()` delivers then answers; `Client()` answers then
 * delivers. The MAC covers the whole of M, its `{digest}` prefix included.
 * A challenger accepts any allowed digest, and a raw 16-byte response as
 * MD5 (what billiard and 3.11 always send); a responder answers a 20-byte
 * challenge with raw MD5 (what billiard and 3.11 expect). So billiard-ts
 * talks to every version in both roles.
 */

import { cancelNativeHandshake, jobId, nativeHandshake, nativeHandshakeAvailable, type NativeHandshakeResult } from '../native/index.js';
import type { Connection } from './connection.js';
import { AuthenticationError, EOFError, OSError, TimeoutError } from './errors.js';
import { race, timeoutSeconds } from './timers.js';

let cryptoModule: typeof import('node:crypto') | undefined;
/** node:crypto, loaded on first use: a child that never handshakes skips its ~10 ms of start-up. */
function nodeCrypto(): typeof import('node:crypto') {
  return (cryptoModule ??= process.getBuiltinModule('node:crypto'));
}

/** Bytes of random data fetched at a time for challenges. */
const RANDOM_POOL_SIZE = 1024;
let randomPool: Uint8Array | null = null;
let randomPoolUsed = RANDOM_POOL_SIZE;

/**
 * `n` random bytes for a challenge, from a pool refilled a kilobyte at a
 * time: a cold call into node:crypto's CSPRNG costs 10 to 30 µs, a large
 * share of a loopback handshake, and one call now serves 25 challenges. No
 * byte is handed out twice.
 */
function challengeBytes(n: number): Uint8Array {
  if (n > RANDOM_POOL_SIZE) return new Uint8Array(nodeCrypto().randomBytes(n));
  if (randomPool === null || randomPoolUsed + n > RANDOM_POOL_SIZE) {
    randomPool = nodeCrypto().randomFillSync(new Uint8Array(RANDOM_POOL_SIZE));
    randomPoolUsed = 0;
  }
  const out = randomPool.slice(randomPoolUsed, randomPoolUsed + n);
  randomPool.fill(0, randomPoolUsed, randomPoolUsed + n);
  randomPoolUsed += n;
  return out;
}

const encoder = new TextEncoder();
const enc = (s: string): Uint8Array => encoder.encode(s);

/** `#CHALLENGE#` (CPython's `CHALLENGE`, `_CHALLENGE` in 3.12+). */
export const CHALLENGE = enc('#CHALLENGE#');
/** `#WELCOME#`. */
export const WELCOME = enc('#WELCOME#');
/** `#FAILURE#`. */
export const FAILURE = enc('#FAILURE#');
/** Random bytes in a legacy challenge (billiard, CPython <= 3.11 `MESSAGE_LENGTH`). */
export const LEGACY_MESSAGE_LENGTH = 20;
/** Random bytes in a modern challenge (CPython 3.12+ `MESSAGE_LENGTH`). */
export const MESSAGE_LENGTH = 40;
/** A raw HMAC-MD5 response: the legacy format (CPython 3.12's `_MD5ONLY_MESSAGE_LENGTH`). */
const MD5_RESPONSE_LENGTH = 16;
/** Every handshake frame is read with this limit. */
export const HANDSHAKE_MAX_LENGTH = 256;

/** Digests CPython 3.12+ allows, with Node's names and MAC sizes. */
const DIGESTS: ReadonlyMap<string, { node: string; size: number }> = new Map([
  ['md5', { node: 'md5', size: 16 }],
  ['sha256', { node: 'sha256', size: 32 }],
  ['sha384', { node: 'sha384', size: 48 }],
  ['sha3_256', { node: 'sha3-256', size: 32 }],
  ['sha3_384', { node: 'sha3-384', size: 48 }],
]);

/** The longest allowed digest name (`sha3_256`), in bytes. */
const MAX_DIGEST_NAME = 8;

/** A digest name CPython 3.12+ allows. */
export type DigestName = 'md5' | 'sha256' | 'sha384' | 'sha3_256' | 'sha3_384';

/** Options of both handshake roles. */
export interface HandshakeOptions {
  /**
   * Seconds the whole handshake may take; on expiry the connection is closed
   * and the handshake fails with TimeoutError. Defaults to none (as CPython).
   */
  timeout?: number | null;
  /** Aborts the handshake (the connection is closed). */
  signal?: AbortSignal;
  /** Random bytes for challenges; tests make them deterministic. Defaults to node:crypto's CSPRNG (pooled). */
  randomBytes?: (n: number) => Uint8Array;
}

/** Options of the challenger. */
export interface DeliverOptions extends HandshakeOptions {
  /**
   * The challenge form: a digest name for the CPython 3.12+ form (default
   * `'sha256'`), or `'legacy'` for billiard's 20 random bytes.
   */
  digest?: DigestName | 'legacy';
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function startsWith(data: Uint8Array, prefix: Uint8Array): boolean {
  if (data.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (data[i] !== prefix[i]) return false;
  return true;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && startsWith(a, b);
}

/** Python's `repr(bytes)`-ish rendering of a message, for errors. */
function show(data: Uint8Array): string {
  let s = "b'";
  for (const b of data.subarray(0, 64)) s += b >= 0x20 && b < 0x7f && b !== 0x27 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return `${s}${data.length > 64 ? '...' : ''}'`;
}

function checkKey(authkey: Uint8Array): void {
  if (!(authkey instanceof Uint8Array)) throw new TypeError('authkey should be a byte string (Uint8Array)');
}

function hmac(digest: string, key: Uint8Array, message: Uint8Array): Uint8Array {
  return new Uint8Array(nodeCrypto().createHmac(digest, key).update(message).digest());
}

/**
 * Splits `{name}mac` into a known digest and the rest, as CPython 3.12's
 * `_get_digest_name_and_payload`: a 16- or 20-byte message is legacy MD5.
 */
function parseDigest(message: Uint8Array): { name: string; node: string; size: number; payload: Uint8Array } {
  if (message.length === MD5_RESPONSE_LENGTH || message.length === LEGACY_MESSAGE_LENGTH) {
    return { name: 'md5', ...DIGESTS.get('md5')!, payload: message };
  }
  if (message[0] === 0x7b) {
    // The '}' must come within the longest allowed name (8, 'sha3_256') + 2 bytes, as in CPython.
    const end = message.subarray(1, MAX_DIGEST_NAME + 2).indexOf(0x7d);
    if (end > 0) {
      const name = new TextDecoder().decode(message.subarray(1, 1 + end));
      const d = DIGESTS.get(name);
      if (d !== undefined) return { name, ...d, payload: message.subarray(end + 2) };
    }
  }
  throw badDigest(message);
}

// The failures of a handshake, made in one place so that the JavaScript
// handshake and the native one (handshakeNative) throw the same.
const expectedChallenge = (frame: Uint8Array): AuthenticationError =>
  new AuthenticationError(`Protocol error, expected challenge: message=${show(frame)}`, { code: 'PROTOCOL' });
const challengeTooShort = (n: number): AuthenticationError => new AuthenticationError(`challenge too short: ${n} bytes`, { code: 'PROTOCOL' });
const badDigest = (message: Uint8Array): AuthenticationError =>
  new AuthenticationError(`unsupported message length, missing digest prefix, or unsupported digest: message=${show(message)}`, { code: 'BAD_DIGEST' });
const digestLength = (name: string, size: number, got: number): AuthenticationError =>
  new AuthenticationError(`expected '${name}' of length ${size} got ${got}`, { code: 'BAD_DIGEST' });
const wrongDigest = (): AuthenticationError => new AuthenticationError('digest received was wrong', { code: 'WRONG_DIGEST' });
const rejected = (): AuthenticationError => new AuthenticationError('digest sent was rejected', { code: 'REJECTED' });
const timedOut = (seconds: number | null): TimeoutError => new TimeoutError(`authentication timed out after ${seconds} s`);

/** Runs `body` under the options' timeout and signal: on either, the connection is closed. */
function guarded<T>(conn: Connection, options: HandshakeOptions | undefined, what: string, body: () => Promise<T>): Promise<T> {
  const seconds = timeoutSeconds(options?.timeout, 'options.timeout');
  const signal = options?.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return race(body(), {
    seconds,
    signal,
    onTimeout: () => (what === 'authentication' ? timedOut(seconds) : new TimeoutError(`${what} timed out after ${seconds} s`)),
    cleanup: () => conn.close(),
  });
}

/**
 * The challenger's half (`deliver_challenge`): sends a challenge, checks the
 * response, sends the verdict. Throws AuthenticationError on a wrong or
 * malformed response, after sending `#FAILURE#`.
 */
export function deliverChallenge(conn: Connection, authkey: Uint8Array, options?: DeliverOptions): Promise<void> {
  checkKey(authkey);
  const form = options?.digest ?? 'sha256';
  const random = options?.randomBytes ?? challengeBytes;
  return guarded(conn, options, 'authentication', async () => {
    const message = challengeMessage(form, random);
    await conn.sendBytes(concat(CHALLENGE, message));
    const response = await conn.recvBytes(HANDSHAKE_MAX_LENGTH);
    try {
      const { name, node, size, payload } = parseDigest(response);
      const expected = hmac(node, authkey, message);
      if (payload.length !== size) throw digestLength(name, size, payload.length);
      if (!nodeCrypto().timingSafeEqual(payload, expected)) throw wrongDigest();
    } catch (e) {
      if (e instanceof AuthenticationError) await conn.sendBytes(FAILURE).catch(() => undefined);
      throw e;
    }
    await conn.sendBytes(WELCOME);
  });
}

/**
 * The responder's half (`answer_challenge`), with CPython 3.12+'s rules:
 * answers a 20-byte challenge with raw HMAC-MD5 and a `{digest}` challenge
 * in kind; throws AuthenticationError on anything else and when the verdict
 * is not `#WELCOME#`.
 */
export function answerChallenge(conn: Connection, authkey: Uint8Array, options?: HandshakeOptions): Promise<void> {
  checkKey(authkey);
  return guarded(conn, options, 'authentication', async () => {
    const challenge = await conn.recvBytes(HANDSHAKE_MAX_LENGTH);
    if (!startsWith(challenge, CHALLENGE)) throw expectedChallenge(challenge);
    const message = challenge.subarray(CHALLENGE.length);
    if (message.length < LEGACY_MESSAGE_LENGTH) throw challengeTooShort(message.length);
    let response: Uint8Array;
    if (message.length === LEGACY_MESSAGE_LENGTH) response = hmac('md5', authkey, message);
    else {
      const { name, node } = parseDigest(message);
      response = concat(enc(`{${name}}`), hmac(node, authkey, message));
    }
    await conn.sendBytes(response);
    const verdict = await conn.recvBytes(HANDSHAKE_MAX_LENGTH);
    if (!equal(verdict, WELCOME)) throw rejected();
  });
}

/** The message of a challenge this side sends: `{form}` and 40 random bytes, or 20 random bytes for `'legacy'`. */
function challengeMessage(form: DigestName | 'legacy', random: (n: number) => Uint8Array): Uint8Array {
  if (form === 'legacy') return random(LEGACY_MESSAGE_LENGTH);
  if (!DIGESTS.has(form)) throw new RangeError(`unsupported digest ${String(form)}`);
  return concat(enc(`{${form}}`), random(MESSAGE_LENGTH));
}

/**
 * Whether the native handshake (handshakeNative) can run: the addon found
 * OpenSSL's HMAC in this process. `BILLIARD_TS_NATIVE_HANDSHAKE=0` turns it
 * off (then the JavaScript handshake runs everywhere).
 */
export function nativeHandshakeUsable(): boolean {
  return nativeEnabled && nativeHandshakeAvailable();
}

let nativeEnabled = process.env.BILLIARD_TS_NATIVE_HANDSHAKE !== '0';

/** Tests: turns the native handshake on or off for Listener and Client; returns the previous setting. */
export function setNativeHandshake(on: boolean): boolean {
  const was = nativeEnabled;
  nativeEnabled = on;
  return was;
}

/** Options of {@link handshakeNative}. */
export interface NativeHandshakeOptions extends DeliverOptions {
  /** The side: `'client'` answers then delivers (`Client()`), `'server'` delivers then answers (a Listener). */
  role: 'client' | 'server';
  /** Whether the wait keeps the event loop alive (a Listener's peers nobody accepted yet do not). Default true. */
  ref?: boolean;
  /** Receives a function that stops the handshake at once (it then fails with `reason`); the socket is free when it returns. */
  onStart?: (stop: (reason: Error) => void) => void;
}

/**
 * Both halves of the handshake, in the order of `role`, run by the addon
 * on the event loop's readiness events (native/handshake.h): a frame costs
 * a wake-up, a recv and a send, as in CPython, not a trip through Node's
 * streams and promises. `target` is a connected socket's descriptor, or
 * `[dotted IPv4 address, port]` for a TCP connection made first (its
 * failures: {@link NativeConnectError}). Resolves with the descriptor.
 *
 * It reads exactly the handshake's frames, so what the peer sends next
 * stays in the socket. Node must not be reading the socket (a socket
 * paused before it connected, or a server's pauseOnConnect), nor use it
 * until this settles. Throws what deliverChallenge and answerChallenge
 * throw for the same peer; the timeout, the signal and `stop` end it at
 * once, with the socket free.
 */
export async function handshakeNative(target: number | [string, number], authkey: Uint8Array, options: NativeHandshakeOptions): Promise<number> {
  checkKey(authkey);
  const message = challengeMessage(options.digest ?? 'sha256', options.randomBytes ?? challengeBytes);
  const seconds = timeoutSeconds(options.timeout, 'options.timeout');
  options.signal?.throwIfAborted();
  const id = jobId();
  const running = nativeHandshake(target, options.role === 'client', authkey, message, id, options.ref !== false);
  let stopped: Error | null = null;
  options.onStart?.((reason) => {
    stopped = reason;
    cancelNativeHandshake(id);
  });
  // The timeout and the signal stop it at once (its promise then resolves as cancelled, first).
  let phase = 0;
  const timeoutError = (): Error => (phase === 1 ? new NativeConnectError('connect timed out', 'TIMEOUT') : timedOut(seconds));
  const r = await race(running, {
    seconds,
    signal: options.signal,
    onTimeout: timeoutError,
    cleanup: () => (phase = cancelNativeHandshake(id)),
    ref: options.ref,
  });
  if (typeof r === 'number') return r;
  if (r.outcome === 8) {
    if (stopped !== null) throw stopped;
    if (options.signal?.aborted) throw options.signal.reason;
    throw timeoutError();
  }
  throw nativeHandshakeError(r);
}

/** A connect made by handshakeNative failed (`code` an errno name, or `'TIMEOUT'`); Client() reports it as it reports its own. */
export class NativeConnectError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** The error of a failed native handshake: the one the JavaScript handshake throws for the same peer. */
function nativeHandshakeError(r: NativeHandshakeResult): Error {
  switch (r.outcome) {
    case 1:
      return new EOFError();
    case 2:
      return new EOFError('got end of file during message', { code: 'TRUNCATED_FRAME' });
    case 3:
      return new OSError(`bad message length: ${r.n} bytes (limit ${HANDSHAKE_MAX_LENGTH} while authenticating)`, { code: 'BAD_MESSAGE_LENGTH' });
    case 4:
      return new OSError(`negative message length ${r.n} in a frame header`, { code: 'BAD_HEADER' });
    case 5:
      return new OSError('message length of 2**53 bytes or more in a frame header', { code: 'BAD_HEADER' });
    case 6:
      // As Connection's writes and reads report them.
      if (r.syscall === 'write' && (r.code === 'EPIPE' || r.code === 'ECONNRESET')) return new OSError('the peer has closed the connection', { code: 'BROKEN_PIPE' });
      return new OSError(`${r.syscall} ${r.code}`, { code: r.code });
    case 9:
      return expectedChallenge(r.bytes);
    case 10:
      return challengeTooShort(r.n);
    case 11:
      return badDigest(r.bytes);
    case 12:
      return digestLength(r.name, r.n, r.got);
    case 13:
      return wrongDigest();
    case 14:
      return rejected();
    case 15:
      return new NativeConnectError(`connect ${r.code}`, r.code);
    default:
      return new OSError(`handshake ended with unknown outcome ${r.outcome}`);
  }
}
