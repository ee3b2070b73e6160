/**
 * billiard-ts's authkey handshake against CPython 3.14's own code: the
 * standard library's `multiprocessing.connection.deliver_challenge` and
 * `answer_challenge`, run by pyodide (CPython 3.14 compiled to WebAssembly)
 * in a worker thread.
 *
 * Pyodide has no sockets, so the Python functions get a bridge object
 * (test/helpers/pyodide-handshake-worker.mjs) whose `send_bytes` posts each
 * frame to this thread and whose `recv_bytes` blocks the worker in
 * `Atomics.wait` until this thread has put the next frame in shared memory.
 * Here a relay carries those frames over a real billiard-ts `Pipe()`: the
 * billiard-ts handshake runs on one end, the relay reads and writes the
 * other, and the raw bytes of both directions are recorded.
 */
import { Worker } from 'node:worker_threads';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { answerChallenge, AuthenticationError, deliverChallenge, EOFError, Pipe, type Connection } from '../src/connection/index.js';

/** Byte 16 on of the shared buffer holds a frame (as in the worker). */
const DATA_OFFSET = 16;
const SHARED_BYTES = DATA_OFFSET + 64 * 1024;
/** How long the worker waits for a frame before Python gets TimeoutError. */
const WAIT_MS = 15_000;

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const KEY = bytes('billiard-ts-demo-key');
const OTHER_KEY = bytes('some-other-key');

/** A result of one Python step, as the worker reports it. */
interface PyResult {
  ok: boolean;
  /** `module.qualname` of the exception. */
  type?: string;
  message?: string;
  /** isinstance(e, multiprocessing.AuthenticationError) */
  isAuthError?: boolean;
}
type PyStep = ['deliver'] | ['deliver', string] | ['answer'];

/** One frame the relay carried. */
interface Carried {
  dir: 'node->py' | 'py->node';
  payload: Uint8Array;
}

type WorkerMessage =
  | { type: 'ready'; version: string }
  | { type: 'send'; bytes: Uint8Array }
  | { type: 'recv' }
  | { type: 'done'; id: number; results: PyResult[] }
  | { type: 'fatal'; message: string };

/** The pyodide worker and the relay between its bridge and a billiard-ts Connection. */
class PyPeer {
  readonly worker: Worker;
  readonly #shared = new SharedArrayBuffer(SHARED_BYTES);
  readonly #ctrl = new Int32Array(this.#shared, 0, 4);
  readonly #data = new Uint8Array(this.#shared, DATA_OFFSET);
  /** Relay operations, in the order the worker asked for them. */
  #chain: Promise<void> = Promise.resolve();
  #relay: Connection | null = null;
  #log: Carried[] = [];
  #relayErrors: unknown[] = [];
  #nextId = 0;
  #pending = new Map<number, { resolve: (r: PyResult[]) => void; reject: (e: Error) => void }>();
  #ready: { resolve: (v: string) => void; reject: (e: Error) => void } | null = null;

  constructor() {
    this.worker = new Worker(new URL('./helpers/pyodide-handshake-worker.mjs', import.meta.url));
    this.worker.on('message', (m: WorkerMessage) => this.#onMessage(m));
    this.worker.on('error', (e) => this.#failAll(e));
    this.worker.on('exit', (code) => this.#failAll(new Error(`pyodide worker exited (${code})`)));
  }

  /** Loads pyodide in the worker; resolves to the Python version. */
  start(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#ready = { resolve, reject };
      this.worker.postMessage({ type: 'init', shared: this.#shared, waitMs: WAIT_MS });
    });
  }

  /**
   * Runs the Python steps with `relay` as the far end of their connection.
   * Resolves once Python is done and every frame it sent is written.
   */
  run(relay: Connection, key: Uint8Array, steps: PyStep[], urandomStart?: number): Promise<{ results: PyResult[]; log: Carried[]; relayErrors: unknown[] }> {
    this.#relay = relay;
    this.#log = [];
    this.#relayErrors = [];
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, {
        resolve: (results) => resolve({ results, log: this.#log, relayErrors: this.#relayErrors }),
        reject,
      });
      this.worker.postMessage({ type: 'run', id, key, steps, urandomStart });
    });
  }

  #then(op: (relay: Connection) => Promise<void>): void {
    const relay = this.#relay!;
    this.#chain = this.#chain.then(() => op(relay)).catch((e: unknown) => void this.#relayErrors.push(e));
  }

  /** Hands the worker a frame (state 1), end of stream (2), an oversized frame's length (3) or an error (4). */
  #supply(state: number, frame?: Uint8Array): void {
    let length = frame?.length ?? 0;
    if (state === 1 && frame !== undefined) {
      if (frame.length > this.#data.length) state = 3;
      else this.#data.set(frame);
    }
    Atomics.store(this.#ctrl, 1, length);
    Atomics.store(this.#ctrl, 0, state);
    Atomics.notify(this.#ctrl, 0);
  }

  #onMessage(m: WorkerMessage): void {
    switch (m.type) {
      case 'ready':
        this.#ready?.resolve(m.version);
        this.#ready = null;
        break;
      case 'send': {
        const payload = new Uint8Array(m.bytes);
        this.#log.push({ dir: 'py->node', payload });
        this.#then((relay) => relay.sendBytes(payload));
        break;
      }
      case 'recv':
        this.#then(async (relay) => {
          let frame: Uint8Array;
          try {
            frame = await relay.recvBytes();
          } catch (e) {
            // The billiard-ts end went away: Python's recv_bytes raises EOFError.
            if (e instanceof EOFError) return this.#supply(2);
            this.#supply(4);
            throw e;
          }
          this.#log.push({ dir: 'node->py', payload: frame });
          this.#supply(1, frame);
        });
        break;
      case 'done': {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        // Every frame Python sent is written before the run counts as done.
        void this.#chain.then(() => p?.resolve(m.results));
        break;
      }
      case 'fatal':
        this.#failAll(new Error(`pyodide worker: ${m.message}`));
        break;
    }
  }

  #failAll(e: Error): void {
    this.#ready?.reject(e);
    this.#ready = null;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }
}

let peer: PyPeer;
let version = '';

beforeAll(async () => {
  peer = new PyPeer();
  version = await peer.start();
});

afterAll(async () => {
  await peer?.worker.terminate();
});

type NodeOutcome = { ok: true } | { ok: false; error: unknown };

/**
 * One handshake: `node` runs billiard-ts's side on one end of a Pipe(), the
 * Python steps run against the other end through the relay. Records the raw
 * bytes each direction carried.
 */
async function handshake(
  node: (conn: Connection) => Promise<void>,
  pySteps: PyStep[],
  pyKey: Uint8Array,
  urandomStart?: number,
): Promise<{ node: NodeOutcome; py: PyResult[]; log: Carried[]; relayErrors: unknown[]; wire: { nodeToPy: Uint8Array; pyToNode: Uint8Array } }> {
  const [nodeSide, relaySide] = Pipe();
  const nodeToPy: Buffer[] = [];
  const pyToNode: Buffer[] = [];
  relaySide.stream.on('data', (c: Buffer) => nodeToPy.push(Buffer.from(c)));
  nodeSide.stream.on('data', (c: Buffer) => pyToNode.push(Buffer.from(c)));
  try {
    const py = peer.run(relaySide, pyKey, pySteps, urandomStart);
    const nodeDone = node(nodeSide).then(
      (): NodeOutcome => ({ ok: true }),
      (error: unknown): NodeOutcome => ({ ok: false, error }),
    );
    // Once billiard-ts is done, close its end: a Python side still waiting then gets EOFError instead of hanging.
    void nodeDone.then(() => nodeSide.close());
    const [nodeOutcome, pyOutcome] = await Promise.all([nodeDone, py]);
    return {
      node: nodeOutcome,
      py: pyOutcome.results,
      log: pyOutcome.log,
      relayErrors: pyOutcome.relayErrors,
      wire: { nodeToPy: new Uint8Array(Buffer.concat(nodeToPy)), pyToNode: new Uint8Array(Buffer.concat(pyToNode)) },
    };
  } finally {
    nodeSide.close();
    relaySide.close();
  }
}

const OK: PyResult = { ok: true };

function expectNodeOk(outcome: NodeOutcome): void {
  if (!outcome.ok) throw new Error(`billiard-ts side failed: ${String((outcome.error as Error)?.stack ?? outcome.error)}`);
}

function expectNodeAuthError(outcome: NodeOutcome, message: string): void {
  expect(outcome.ok, 'billiard-ts side should fail').toBe(false);
  const error = (outcome as { error: unknown }).error;
  expect(error).toBeInstanceOf(AuthenticationError);
  expect((error as Error).message).toBe(message);
}

function pyAuthError(message: string): PyResult {
  return { ok: false, type: 'multiprocessing.context.AuthenticationError', message, isAuthError: true };
}

const counting =
  (start: number) =>
  (n: number): Uint8Array =>
    Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);

describe('authkey handshake against CPython 3.14 multiprocessing.connection (pyodide)', () => {
  test('pyodide runs CPython 3.14', () => {
    expect(version).toMatch(/^3\.14\./);
  });

  test('billiard-ts deliverChallenge (sha256) vs 3.14 answer_challenge, same key', async () => {
    const r = await handshake((c) => deliverChallenge(c, KEY), [['answer']], KEY);
    expectNodeOk(r.node);
    expect(r.py).toEqual([OK]);
    expect(r.relayErrors).toEqual([]);
    expect(r.log.map((f) => f.dir)).toEqual(['node->py', 'py->node', 'node->py']);
    const [challenge, response, verdict] = r.log.map((f) => f.payload);
    expect(challenge!.length).toBe(11 + 8 + 40);
    expect(Buffer.from(challenge!.subarray(0, 19)).toString('latin1')).toBe('#CHALLENGE#{sha256}');
    expect(response!.length).toBe(8 + 32);
    expect(Buffer.from(response!.subarray(0, 8)).toString('latin1')).toBe('{sha256}');
    expect(Buffer.from(verdict!).toString('latin1')).toBe('#WELCOME#');
  });

  test('3.14 deliver_challenge (sha256) vs billiard-ts answerChallenge, same key', async () => {
    const r = await handshake((c) => answerChallenge(c, KEY), [['deliver']], KEY);
    expectNodeOk(r.node);
    expect(r.py).toEqual([OK]);
    expect(r.relayErrors).toEqual([]);
    expect(r.log.map((f) => f.dir)).toEqual(['py->node', 'node->py', 'py->node']);
    const [challenge, response, verdict] = r.log.map((f) => f.payload);
    expect(Buffer.from(challenge!.subarray(0, 19)).toString('latin1')).toBe('#CHALLENGE#{sha256}');
    expect(Buffer.from(response!.subarray(0, 8)).toString('latin1')).toBe('{sha256}');
    expect(response!.length).toBe(8 + 32);
    expect(Buffer.from(verdict!).toString('latin1')).toBe('#WELCOME#');
  });

  test("billiard-ts deliverChallenge digest 'legacy' vs 3.14 answer_challenge: raw HMAC-MD5", async () => {
    const r = await handshake((c) => deliverChallenge(c, KEY, { digest: 'legacy' }), [['answer']], KEY);
    expectNodeOk(r.node);
    expect(r.py).toEqual([OK]);
    expect(r.relayErrors).toEqual([]);
    const [challenge, response, verdict] = r.log.map((f) => f.payload);
    expect(challenge!.length).toBe(11 + 20);
    expect(response!.length).toBe(16); // no {md5} prefix
    expect(Buffer.from(verdict!).toString('latin1')).toBe('#WELCOME#');
  });

  test.each(['md5', 'sha3_256'])("3.14 deliver_challenge digest_name='%s' vs billiard-ts answerChallenge", async (digest) => {
    const r = await handshake((c) => answerChallenge(c, KEY), [['deliver', digest]], KEY);
    expectNodeOk(r.node);
    expect(r.py).toEqual([OK]);
    expect(r.relayErrors).toEqual([]);
    const [challenge, response, verdict] = r.log.map((f) => f.payload);
    expect(Buffer.from(challenge!.subarray(0, 11 + digest.length + 2)).toString('latin1')).toBe(`#CHALLENGE#{${digest}}`);
    expect(Buffer.from(response!.subarray(0, digest.length + 2)).toString('latin1')).toBe(`{${digest}}`);
    expect(response!.length).toBe(digest.length + 2 + (digest === 'md5' ? 16 : 32));
    expect(Buffer.from(verdict!).toString('latin1')).toBe('#WELCOME#');
  });

  describe('wrong key', () => {
    test('billiard-ts challenger, 3.14 responder', async () => {
      const r = await handshake((c) => deliverChallenge(c, KEY), [['answer']], OTHER_KEY);
      expectNodeAuthError(r.node, 'digest received was wrong');
      expect(r.py).toEqual([pyAuthError('digest sent was rejected')]);
      expect(r.relayErrors).toEqual([]);
      expect(Buffer.from(r.log[2]!.payload).toString('latin1')).toBe('#FAILURE#');
    });

    test('3.14 challenger, billiard-ts responder', async () => {
      const r = await handshake((c) => answerChallenge(c, OTHER_KEY), [['deliver']], KEY);
      expectNodeAuthError(r.node, 'digest sent was rejected');
      expect(r.py).toEqual([pyAuthError('digest received was wrong')]);
      expect(r.relayErrors).toEqual([]);
      expect(Buffer.from(r.log[2]!.payload).toString('latin1')).toBe('#FAILURE#');
    });
  });

  test('deterministic mutual handshake is byte-identical to the spec transcript (Modern)', async () => {
    // The "Modern" transcript of the connection spec (section 4; spec/connection.md is not in this repository): key b'billiard-ts-demo-key'; S delivers then answers, C answers then delivers.
    const TRANSCRIPT = `
1 S→C 0000003b 234348414c4c454e4745237b7368613235367d 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627
2 C→S 00000028 7b7368613235367d bc37679b21f2ebd14b237660619b58eb6483e856cb3413ac4ef0ef9f3ea192d6
3 S→C 00000009 2357454c434f4d4523
4 C→S 0000003b 234348414c4c454e4745237b7368613235367d 808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7
5 S→C 00000028 7b7368613235367d 6cbe90daabc21d0829faaa8266e1b4b72c72cbb3ab02b3a1864af5e60285ba67
6 C→S 00000009 2357454c434f4d4523
`;
    const frames = TRANSCRIPT.trim()
      .split('\n')
      .map((line) => {
        const [, dir, header, ...payload] = line.trim().split(/\s+/);
        return { dir: dir!, header: header!, payload: payload.join('') };
      });
    for (const f of frames) expect(parseInt(f.header, 16), 'transcript header').toBe(f.payload.length / 2);

    // billiard-ts is S (random bytes 00 01 02 ...), CPython 3.14 is C (os.urandom gives 80 81 82 ...).
    const r = await handshake(
      async (c) => {
        await deliverChallenge(c, KEY, { randomBytes: counting(0x00) });
        await answerChallenge(c, KEY);
      },
      [['answer'], ['deliver']],
      KEY,
      0x80,
    );
    expectNodeOk(r.node);
    expect(r.py).toEqual([OK, OK]);
    expect(r.relayErrors).toEqual([]);

    // The frames in the order the relay carried them.
    expect(r.log.map((f) => `${f.dir === 'node->py' ? 'S→C' : 'C→S'} ${hex(f.payload)}`)).toEqual(frames.map((f) => `${f.dir} ${f.payload}`));
    // The raw bytes on the socket pair, headers included, each direction.
    const wire = (dir: string): string =>
      frames
        .filter((f) => f.dir === dir)
        .map((f) => f.header + f.payload)
        .join('');
    expect(hex(r.wire.nodeToPy)).toBe(wire('S→C'));
    expect(hex(r.wire.pyToNode)).toBe(wire('C→S'));
  });

  test('the bridge keeps CPython recv_bytes(256) semantics: a 257-byte frame is refused, 256 read', async () => {
    // Not a handshake: checks the bridge itself, so the cases above really run under the 256-byte limit.
    const filler = (n: number): Uint8Array => {
      const out = new Uint8Array(n);
      out.set(bytes('#CHALLENGE#'));
      out.fill(0x41, 11);
      return out;
    };
    const long = await handshake((c) => c.sendBytes(filler(257)), [['answer']], KEY);
    expect(long.py).toEqual([{ ok: false, type: 'builtins.OSError', message: 'bad message length', isAuthError: false }]);
    const exact = await handshake((c) => c.sendBytes(filler(256)), [['answer']], KEY);
    // Read in full; 3.14 then refuses the 245-byte challenge without a {digest} prefix.
    expect(exact.py).toHaveLength(1);
    expect(exact.py[0]!.type).toBe('multiprocessing.context.AuthenticationError');
    expect(exact.py[0]!.message).toMatch(/^unsupported message length, missing digest prefix, or unsupported digest: message=b'AAAA/);
  });
});
