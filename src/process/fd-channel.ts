/**
 * The descriptor channel of a warm fork server child: an AF_UNIX socket
 * pair whose child end is the child's descriptor {@link DESCRIPTOR_CHANNEL_FD}
 * from its spawn on (the IPC channel is descriptor 3). At `start()` the
 * parent writes on its end, before it sends the start message on the IPC
 * channel:
 *
 * 1. a header: a 4-byte big-endian count n, then n 4-byte big-endian
 *    numbers, the descriptor numbers the bootstrap pickles name (`_DupFd`);
 * 2. the n descriptors themselves, with `SCM_RIGHTS`, in messages of at
 *    most 253 (one byte of `count % 256` each, as billiard's `sendfds`),
 *    in the order of the numbers;
 *
 * then closes its end. Every descriptor (a Connection's socket, a queue's
 * pipe, a shared memory arena) travels as it is: the kernel passes the open
 * file, whose flags nobody changes (a queue's pipe stays blocking, as the
 * Python processes sharing it expect).
 *
 * Since all of it is written before the start message is even sent, the
 * child reads what is there when that message comes, without waiting: less
 * than the header announced (a parent that closed the channel early) or a
 * different number of descriptors is an error, never a wait.
 */

import { readable, recvFds, sendFds } from '../native/index.js';

/** The warm child's descriptor that receives the descriptors of its start (after the IPC channel's 3). */
export const DESCRIPTOR_CHANNEL_FD = 4;

/** Descriptors in one SCM_RIGHTS message (billiard's limit: its byte holds count % 256). */
const PER_MESSAGE = 253;

/** What went wrong on the descriptor channel (in the child: the start fails with it). */
export class DescriptorChannelError extends Error {
  override name = 'DescriptorChannelError';
}

/**
 * Writes the header and the descriptors on `sock` (this process's end): `fds[i]`
 * is the descriptor the pickles call `numbers[i]`. Throws the system error
 * (EPIPE: the child is gone; nothing reached it then when it came from the header).
 */
export function sendDescriptors(sock: number, numbers: readonly number[], fds: readonly number[]): void {
  if (numbers.length !== fds.length) throw new RangeError('one descriptor per number');
  writeHeader(sock, numbers);
  writeDescriptors(sock, fds);
}

/** Part 1 of {@link sendDescriptors}: the header. @internal (tests break the channel with the parts) */
export function writeHeader(sock: number, numbers: readonly number[]): void {
  const header = Buffer.alloc(4 + 4 * numbers.length);
  header.writeUInt32BE(numbers.length, 0);
  numbers.forEach((n, i) => header.writeUInt32BE(n, 4 + 4 * i));
  const { writeSync } = process.getBuiltinModule('node:fs');
  // A fresh channel's buffer holds far more than a header: a short write means the child is not reading one.
  if (writeSync(sock, header) !== header.length) throw new DescriptorChannelError('the descriptor channel took part of the header');
}

/** Part 2 of {@link sendDescriptors}: the descriptors, 253 a message. @internal */
export function writeDescriptors(sock: number, fds: readonly number[]): void {
  for (let i = 0; i < fds.length; i += PER_MESSAGE) sendFds(sock, fds.slice(i, i + PER_MESSAGE));
}

function readNow(sock: number, n: number, what: string): Buffer {
  const there = readable(sock);
  if (there < n) {
    throw new DescriptorChannelError(`the descriptor channel holds ${there} bytes where ${what} takes ${n}: the parent closed it before sending its descriptors`);
  }
  const { readSync } = process.getBuiltinModule('node:fs');
  const buf = Buffer.alloc(n);
  for (let off = 0; off < n; ) {
    const got = readSync(sock, buf, off, n - off, null);
    if (got === 0) throw new DescriptorChannelError(`the descriptor channel ended inside ${what}`);
    off += got;
  }
  return buf;
}

function closeAll(fds: readonly number[]): void {
  const { closeSync } = process.getBuiltinModule('node:fs');
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // Already closed.
    }
  }
}

/**
 * The descriptors received on `sock`, by the number the pickles call them:
 * exactly as many as the header announced, every number once, nothing more
 * on the channel. Anything else is a {@link DescriptorChannelError} (the
 * descriptors received so far are closed). Does not wait: the parent wrote
 * everything before the start message that made the caller look.
 */
export function receiveDescriptors(sock: number): Map<number, number> {
  const count = readNow(sock, 4, 'the header').readUInt32BE(0);
  if (count > 65536) throw new DescriptorChannelError(`the descriptor channel announced ${count} descriptors`);
  const head = readNow(sock, 4 * count, `the header's ${count} descriptor numbers`);
  const numbers = Array.from({ length: count }, (_, i) => head.readUInt32BE(4 * i));
  if (new Set(numbers).size !== count) throw new DescriptorChannelError(`the descriptor channel named a descriptor number twice: ${numbers.join(', ')}`);
  const fds: number[] = [];
  try {
    while (fds.length < count) {
      const want = Math.min(PER_MESSAGE, count - fds.length);
      let got: number[];
      try {
        got = recvFds(sock, want);
      } catch (e) {
        const code = (e as { code?: string }).code;
        const why =
          code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EPIPE'
            ? `${fds.length} arrived`
            : code === 'EMSGSIZE'
              ? `a message carried more than ${want}`
              : (e as Error).message;
        throw new DescriptorChannelError(`the parent announced ${count} descriptors, ${why}`);
      }
      fds.push(...got);
      if (got.length !== want) throw new DescriptorChannelError(`the parent announced ${count} descriptors, a message carried ${got.length} where ${want} were due`);
    }
    const extra = readable(sock);
    if (extra > 0) throw new DescriptorChannelError(`the descriptor channel holds ${extra} bytes more than the ${count} descriptors it announced`);
  } catch (e) {
    closeAll(fds);
    throw e;
  }
  return new Map(numbers.map((n, i) => [n, fds[i]!]));
}

/**
 * The received descriptors, handed out by number once each: a number the
 * pickles name and the parent did not send is an error; {@link closeUnused}
 * closes those nobody asked for.
 */
export class ReceivedDescriptors {
  readonly #fds: Map<number, number>;
  readonly #used = new Set<number>();

  constructor(fds: Map<number, number>) {
    this.#fds = fds;
  }

  /** This process's descriptor for the number `childFd` of the bootstrap pickles. */
  get(childFd: number): number {
    const fd = this.#fds.get(childFd);
    if (fd === undefined) {
      const sent = [...this.#fds.keys()];
      throw new DescriptorChannelError(`the bootstrap data names descriptor ${childFd}, which the parent did not send (it sent ${sent.length === 0 ? 'none' : sent.join(', ')})`);
    }
    this.#used.add(childFd);
    return fd;
  }

  /** Closes the descriptors no rebuilder asked for. */
  closeUnused(): void {
    closeAll([...this.#fds].filter(([n]) => !this.#used.has(n)).map(([, fd]) => fd));
  }
}
