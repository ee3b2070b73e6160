/**
 * A worker thread running CPython 3.14 (pyodide) for
 * test/connection-handshake-cpython314.test.ts: it calls the standard
 * library's own `multiprocessing.connection.deliver_challenge` and
 * `answer_challenge` on a bridge object whose `send_bytes`/`recv_bytes`
 * carry frames to and from the main thread.
 *
 * The Python functions are synchronous, so `recv_bytes` blocks this thread
 * in `Atomics.wait` on shared memory until the main thread has put the next
 * frame there; `send_bytes` posts the frame to the main thread.
 *
 * Messages main -> worker (only while the worker is idle):
 *   { type: 'init', shared: SharedArrayBuffer, waitMs }
 *   { type: 'run', id, key: Uint8Array, steps: [['deliver', digest?] | ['answer']], urandomStart: number | null }
 * Messages worker -> main:
 *   { type: 'ready', version }
 *   { type: 'send', bytes: Uint8Array }   a frame Python sent
 *   { type: 'recv' }                      Python waits for the next frame
 *   { type: 'done', id, results: [{ ok, type?, message?, isAuthError? }] }
 *   { type: 'fatal', message }
 *
 * Shared memory: Int32 [0] state, [1] length, then the frame's bytes from
 * byte 16. States: 0 waiting, 1 frame, 2 end of stream, 3 frame too large
 * for the buffer (length = its size), 4 relay error.
 */
import { parentPort } from 'node:worker_threads';

import { loadPyodide } from 'pyodide';

const DATA_OFFSET = 16;

let ctrl;
let data;
let waitMs = 20_000;

const bridge = {
  /** A frame from Python, as a PyProxy of bytes. */
  send(pyBytes) {
    // A copy: the proxy (and the memory it views) goes away after the call.
    const bytes = pyBytes.toJs();
    parentPort.postMessage({ type: 'send', bytes });
  },
  /** Blocks until the main thread supplies the next frame. */
  recv() {
    Atomics.store(ctrl, 0, 0);
    parentPort.postMessage({ type: 'recv' });
    if (Atomics.wait(ctrl, 0, 0, waitMs) === 'timed-out') return { state: -1, length: 0, data: null };
    const state = Atomics.load(ctrl, 0);
    const length = Atomics.load(ctrl, 1);
    return { state, length, data: state === 1 ? data.slice(0, length) : null };
  },
};

const PYTHON = `
import os, multiprocessing
import multiprocessing.connection as mc
import _node_bridge

class Bridge:
    """The two methods of multiprocessing.connection.Connection the handshake uses,
    with CPython's maxlength rule: a longer frame raises OSError('bad message length')
    and the (duplex) end stops reading."""

    def __init__(self):
        self._readable = True

    def send_bytes(self, buf, offset=0, size=None):
        m = memoryview(buf).cast('B')
        if size is None:
            size = len(m) - offset
        _node_bridge.send(bytes(m[offset:offset + size]))

    def recv_bytes(self, maxlength=None):
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        if not self._readable:
            raise OSError("connection is write-only")
        r = _node_bridge.recv()
        state, length = r.state, r.length
        if state == 2:
            raise EOFError
        if state == -1:
            raise TimeoutError("bridge: no frame from the main thread")
        if state in (1, 3) and maxlength is not None and length > maxlength:
            self._readable = False
            raise OSError("bad message length")
        if state != 1:
            raise RuntimeError(f"bridge: relay state {state}, length {length}")
        return r.data.to_bytes()

def run(key, steps, urandom_start):
    key = key.to_bytes()
    steps = steps.to_py()
    real_urandom = os.urandom
    if urandom_start is not None:
        def counting(n, _start=urandom_start):
            return bytes((_start + i) & 0xff for i in range(n))
        os.urandom = counting
    conn = Bridge()
    results = []
    try:
        for step in steps:
            try:
                if step[0] == 'deliver':
                    if len(step) > 1:
                        mc.deliver_challenge(conn, key, step[1])
                    else:
                        mc.deliver_challenge(conn, key)
                elif step[0] == 'answer':
                    mc.answer_challenge(conn, key)
                else:
                    raise ValueError(f"unknown step {step!r}")
                results.append({'ok': True})
            except BaseException as e:
                t = type(e)
                results.append({'ok': False, 'type': f'{t.__module__}.{t.__qualname__}', 'message': str(e),
                                'isAuthError': isinstance(e, multiprocessing.AuthenticationError)})
                break
    finally:
        os.urandom = real_urandom
    return results
`;

let py;

parentPort.on('message', async (msg) => {
  try {
    if (msg.type === 'init') {
      ctrl = new Int32Array(msg.shared, 0, 4);
      data = new Uint8Array(msg.shared, DATA_OFFSET);
      if (msg.waitMs) waitMs = msg.waitMs;
      py = await loadPyodide();
      py.registerJsModule('_node_bridge', bridge);
      py.runPython(PYTHON);
      const version = py.runPython('import sys; sys.version.split()[0]');
      parentPort.postMessage({ type: 'ready', version });
    } else if (msg.type === 'run') {
      const run = py.globals.get('run');
      // undefined, not null: JS null becomes jsnull in Python, not None.
      const out = run(msg.key, msg.steps, msg.urandomStart ?? undefined);
      const results = out.toJs({ dict_converter: Object.fromEntries });
      out.destroy();
      run.destroy();
      parentPort.postMessage({ type: 'done', id: msg.id, results });
    }
  } catch (e) {
    parentPort.postMessage({ type: 'fatal', message: String(e?.stack ?? e) });
  }
});
