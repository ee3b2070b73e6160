/**
 * A billiard-ts `Pipe()` shared with a spawned Python child through an
 * inherited file descriptor: Node keeps one end, the child gets the other as
 * its fd 3 and wraps it in billiard's (or multiprocessing's) `Connection`.
 *
 * - Duplex: compat/peers/conn_peer.py's command loop (through fd_peer.py
 *   --mode serve): every corpus value both ways, 8 MiB send_bytes both ways,
 *   10,000 small messages both ways.
 * - One-way, Node writes and the child reads (fd_peer.py --mode read, which
 *   prints its replies on stdout): every corpus value, 8 MiB, a burst.
 * - One-way, the child writes and Node reads (fd_peer.py --mode write): the
 *   same, in the other direction, then end of file.
 *
 * The ends billiard-ts hands out are non-blocking (libuv sets O_NONBLOCK on
 * the open file description, which the child shares), where Python's Pipe()
 * ends are blocking. fd_peer.py makes the fd blocking before use; the last
 * test records the difference.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';

import { describe, expect, test } from 'vitest';

import { EOFError, Pipe, tuple, type Connection } from '../src/index.js';
import { exercise, expectCorpusFrom, GROUPS, pattern, receiveBurst, sendCorpusToCheck } from './helpers/exchange.js';
import { pythonFor, startPeer, type Peer } from './helpers/peers.js';

const BIG = 8 * 1024 * 1024;
const BURST = 10_000;
const TIMEOUT = 20_000;
/** Integral floats stay floats, so they compare with the corpus values. */
const connection = { loadOptions: { floats: 'wrap-integral' as const } };
type Impl = 'billiard' | 'mp';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * Starts fd_peer.py with `end` as its fd 3, then closes `end` here (the child
 * now holds the only copy). The peer's stdout lines after the first are kept.
 */
async function startFdPeer(impl: Impl, mode: 'serve' | 'read' | 'write', end: Connection): Promise<Peer & { lines: string[] }> {
  const started = startPeer(pythonFor('3.11'), 'fd_peer.py', ['--impl', impl, '--fd', '3', '--mode', mode, '--big', String(BIG), '--burst', String(BURST)], {
    stdio: ['ignore', 'pipe', 'pipe', end.fileno()],
  });
  // spawn() ran synchronously inside startPeer: close before anything is sent.
  end.close();
  const peer = await started;
  // The child wraps the fd as is: it must arrive blocking, as Python Pipe() ends do.
  expect(peer.info.nonblocking).toBe(false);
  const lines: string[] = [];
  createInterface({ input: peer.proc.stdout! }).on('line', (l) => lines.push(l));
  return { ...peer, lines };
}

/** Resolves when the peer has printed `n` reply lines after its first; returns them parsed. */
async function replies(peer: Peer & { lines: string[] }, n: number): Promise<unknown[]> {
  while (peer.lines.length < n) {
    if (peer.proc.exitCode !== null) throw new Error(`peer exited (${peer.proc.exitCode}) after ${peer.lines.length} of ${n} replies: ${peer.stderr()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return peer.lines.map((l) => JSON.parse(l) as unknown);
}

describe.each(['billiard', 'mp'] as const)('Python child (--impl %s) on an inherited fd', (impl) => {
  test(
    'duplex Pipe: corpus, 8 MiB and a 10,000-message burst both ways',
    async () => {
      const [conn, childEnd] = Pipe({ connection });
      const peer = await startFdPeer(impl, 'serve', childEnd);
      expect(childEnd.closed).toBe(true);
      await exercise(conn, { big: BIG, burst: BURST }); // ends with ('exit',)
      expect(await peer.exited, peer.stderr()).toBe(0);
      // The child closed the only other copy: end of file.
      await expect(conn.recv()).rejects.toBeInstanceOf(EOFError);
      conn.close();
    },
    TIMEOUT,
  );

  test(
    'one-way Pipe, Node writes: corpus, 8 MiB and a burst reach the child',
    async () => {
      const [readEnd, writeEnd] = Pipe({ duplex: false, connection });
      const peer = await startFdPeer(impl, 'read', readEnd);
      for (const group of GROUPS) await sendCorpusToCheck(writeEnd, group);
      const big = pattern(BIG);
      await writeEnd.send(tuple('recv_big'));
      await writeEnd.sendBytes(big);
      await writeEnd.send(tuple('expect_burst', BURST));
      await Promise.all(Array.from({ length: BURST }, (_, i) => writeEnd.send(i)));
      await writeEnd.send(tuple('exit'));
      expect(await replies(peer, 4)).toEqual([[], [], [BIG, sha256(big)], [true, BURST]]);
      expect(await peer.exited, peer.stderr()).toBe(0);
      writeEnd.close();
    },
    TIMEOUT,
  );

  test(
    'one-way Pipe, the child writes: corpus, 8 MiB and a burst reach Node, then EOF',
    async () => {
      const [readEnd, writeEnd] = Pipe({ duplex: false, connection });
      const peer = await startFdPeer(impl, 'write', writeEnd);
      for (const group of GROUPS) await expectCorpusFrom(readEnd, group);
      const got = await readEnd.recvBytes();
      expect(got.length).toBe(BIG);
      expect(sha256(got)).toBe(sha256(pattern(BIG)));
      await receiveBurst(readEnd, BURST);
      await expect(readEnd.recv()).rejects.toBeInstanceOf(EOFError);
      expect(await peer.exited, peer.stderr()).toBe(0);
      readEnd.close();
    },
    TIMEOUT,
  );
});

/**
 * Python's Pipe() ends are blocking, and a Python child wraps its fd as is:
 * an end only handed to a child must reach it blocking (a Connection made
 * from a descriptor becomes a non-blocking Node socket only on first use).
 */
test(
  'every Pipe() end reaches a spawned child blocking, as Python Pipe() ends do',
  async () => {
    const python = pythonFor('3.11');
    const seen: string[] = [];
    for (const duplex of [true, false]) {
      const ends = Pipe({ duplex });
      for (const end of ends) {
        const proc = spawn(python, ['-c', 'import os; print(os.get_blocking(3))'], { stdio: ['ignore', 'pipe', 'inherit', end.fileno()] });
        end.close();
        let out = '';
        proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
        await new Promise((resolve) => proc.on('close', resolve));
        seen.push(`${duplex ? 'duplex' : 'one-way'} ${end === ends[0] ? 'first' : 'second'} end: blocking=${out.trim()}`);
      }
    }
    expect(seen).toEqual(['duplex first end: blocking=True', 'duplex second end: blocking=True', 'one-way first end: blocking=True', 'one-way second end: blocking=True']);
  },
  TIMEOUT,
);
