/**
 * Descriptor passing (SCM_RIGHTS) as billiard.reduction does it:
 * sendHandle/recvHandle between Node processes' ends, with billiard's and
 * CPython 3.12/3.13 multiprocessing's send_handle/recv_handle on the other
 * end, and the errors of a peer that hangs up, sends nothing, or sends a
 * message that does not match.
 */
import { closeSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, test } from 'vitest';

import { EOFError, Pipe, recvFds, recvHandle, RuntimeError, sendFds, sendHandle, TimeoutError, ValueError } from '../src/index.js';
import { pipe as osPipe } from '../src/native/index.js';
import { startPeer, pythonFor, type PyVersion } from './helpers/peers.js';

const dir = mkdtempSync(join(tmpdir(), 'bt-handles-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const openFds = (): number => readdirSync('/proc/self/fd').length;

function readAll(fd: number): string {
  const buf = Buffer.alloc(1000);
  const n = readSync(fd, buf, 0, buf.length, 0);
  return buf.subarray(0, n).toString();
}

describe('between Node ends', () => {
  test('a file descriptor sent with sendHandle is the same open file in recvHandle', async () => {
    const file = join(dir, 'a.txt');
    writeFileSync(file, 'shared by descriptor');
    const fd = openSync(file, 'r');
    const [a, b] = Pipe();
    await sendHandle(a, fd, process.pid);
    const got = await recvHandle(b, { timeout: 10 });
    expect(got).not.toBe(fd);
    expect(readAll(got)).toBe('shared by descriptor');
    closeSync(got);
    closeSync(fd);
    // The Connection still carries pickles afterwards.
    await a.send('after');
    expect(await b.recv()).toBe('after');
    a.close();
    b.close();
  });

  test('several at once with sendFds/recvFds, and the acknowledgement of CPython 3.14 and macOS', async () => {
    const [a, b] = Pipe();
    const fds = [0, 1, 2].map((i) => {
      const f = join(dir, `m${i}.txt`);
      writeFileSync(f, `file ${i}`);
      return openSync(f, 'r');
    });
    const received = recvFds(b.fileno(), 3, { acknowledge: true, timeout: 10 });
    await sendFds(a.fileno(), fds, { acknowledge: true, timeout: 10 });
    const got = await received;
    expect(got.map(readAll)).toEqual(['file 0', 'file 1', 'file 2']);
    for (const f of [...got, ...fds]) closeSync(f);
    a.close();
    b.close();
  });

  test('a peer that hangs up: EOFError; one that sends nothing: TimeoutError; a byte without descriptors: RuntimeError', async () => {
    const [a, b] = Pipe();
    a.close();
    await expect(recvHandle(b, { timeout: 10 })).rejects.toBeInstanceOf(EOFError);
    b.close();
    const [c, d] = Pipe();
    await expect(recvHandle(d, { timeout: 0.2 })).rejects.toBeInstanceOf(TimeoutError);
    writeSync(c.fileno(), Uint8Array.of(1));
    await expect(recvHandle(d, { timeout: 10 })).rejects.toBeInstanceOf(RuntimeError);
    c.close();
    d.close();
  });

  test('more descriptors than asked for: RuntimeError, and every one received is closed', async () => {
    const [a, b] = Pipe();
    const [r, w] = osPipe();
    const before = openFds();
    await sendFds(a.fileno(), [r, w, r, w]);
    await expect(recvFds(b.fileno(), 1, { timeout: 10 })).rejects.toBeInstanceOf(RuntimeError);
    expect(openFds()).toBe(before);
    for (const f of [r, w]) closeSync(f);
    a.close();
    b.close();
  });

  test('misuse: recvHandle on a Connection that already reads, a bad count', async () => {
    const [a, b] = Pipe();
    await a.send('x');
    expect(await b.recv()).toBe('x');
    await expect(recvHandle(b, { timeout: 1 })).rejects.toBeInstanceOf(ValueError);
    await expect(sendFds(a.fileno(), [])).rejects.toBeInstanceOf(ValueError);
    await expect(recvFds(a.fileno(), 0)).rejects.toBeInstanceOf(ValueError);
    a.close();
    b.close();
  });
});

const peers: Array<[PyVersion, string]> = [
  ['3.11', 'billiard'],
  ['3.12', 'multiprocessing'],
  ['3.13', 'multiprocessing'],
];

describe.each(peers)('with CPython %s (%s.reduction)', (version, lib) => {
  test('Node sends a descriptor; Python recv_handle()s it and reads the file', async () => {
    const [mine, theirs] = Pipe();
    const file = join(dir, `to-${version}.txt`);
    writeFileSync(file, `for ${lib}`);
    const fd = openSync(file, 'r');
    const peer = await startPeer(pythonFor(version), 'handle_peer.py', [lib, 'recv'], { stdio: ['ignore', 'pipe', 'pipe', theirs.fileno()] });
    theirs.close();
    expect(peer.info.python).toMatch(new RegExp(`^${version.replace('.', '\\.')}\\.`));
    await sendHandle(mine, fd, peer.proc.pid);
    closeSync(fd);
    const reply = (await mine.recv()) as unknown[];
    expect(reply[0]).toBe('read');
    expect(Buffer.from(reply[1] as Uint8Array).toString()).toBe(`for ${lib}`);
    expect(await peer.exited).toBe(0);
    mine.close();
  });

  test('Python send_handle()s the read end of a pipe; Node recvHandle()s it and reads', async () => {
    const [mine, theirs] = Pipe();
    const peer = await startPeer(pythonFor(version), 'handle_peer.py', [lib, 'send'], { stdio: ['ignore', 'pipe', 'pipe', theirs.fileno()] });
    theirs.close();
    const fd = await recvHandle(mine, { timeout: 30 });
    const buf = Buffer.alloc(200);
    const n = readSync(fd, buf);
    closeSync(fd);
    expect(buf.subarray(0, n).toString()).toBe(`hello from ${lib} ${String(peer.info.python)}`);
    await mine.send('done');
    expect(await peer.exited).toBe(0);
    mine.close();
  });
});
