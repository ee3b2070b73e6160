/**
 * The authkey handshake against golden transcripts of real handshakes
 * between two CPython processes (billiard 4.1 and CPython 3.11, 3.12, 3.13;
 * fixtures/make_handshake_fixtures.py, with deterministic random bytes).
 * billiard-ts replays each side: given the same random bytes it must write
 * the very frames CPython wrote, and end the same way (success, or the same
 * AuthenticationError).
 */
import { readFileSync } from 'node:fs';

import { describe, expect, test } from 'vitest';

import { answerChallenge, AuthenticationError, deliverChallenge, Pipe, type Connection } from '../src/index.js';

interface Transcript {
  frames: Array<['S->C' | 'C->S', string, string]>;
  server: string;
  client: string;
}

const doc = JSON.parse(readFileSync(new URL('../fixtures/handshakes-cpython.json', import.meta.url), 'utf8')) as {
  key: string;
  cases: Record<string, Transcript>;
};
const KEY = new Uint8Array(Buffer.from(doc.key, 'hex'));
const WRONG_KEY = new TextEncoder().encode('wrong-key');
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const CHALLENGE_HEX = hex(new TextEncoder().encode('#CHALLENGE#'));

/** The random bytes inside a challenge frame's payload, and the digest form it announces. */
function challengeParts(payloadHex: string): { random: Uint8Array; digest: 'legacy' | 'sha256' } {
  const message = Buffer.from(payloadHex.slice(CHALLENGE_HEX.length), 'hex');
  if (message.length === 20) return { random: new Uint8Array(message), digest: 'legacy' };
  const prefix = '{sha256}';
  expect(message.subarray(0, prefix.length).toString()).toBe(prefix);
  return { random: new Uint8Array(message.subarray(prefix.length)), digest: 'sha256' };
}

/** Plays one side of a transcript on `conn`: checks every frame it receives, sends its own. */
async function script(conn: Connection, t: Transcript, side: 'S' | 'C'): Promise<void> {
  for (const [direction, header, payload] of t.frames) {
    if (direction.startsWith(side)) {
      await conn.sendBytes(Buffer.from(payload, 'hex'));
    } else {
      const got = await conn.recvBytes(256);
      expect(`${(got.length >>> 0).toString(16).padStart(8, '0')} ${hex(got)}`).toBe(`${header} ${payload}`);
    }
  }
}

async function outcome(p: Promise<void>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    expect(e).toBeInstanceOf(AuthenticationError);
    return `AuthenticationError: ${(e as Error).message}`;
  }
}

describe.each(Object.entries(doc.cases))('%s', (_name, t) => {
  const serverChallenge = challengeParts(t.frames[0]![2]);
  const clientChallenge = t.frames.length > 3 ? challengeParts(t.frames[3]![2]) : null;
  const wrongKey = _name.includes('wrong key');

  test('billiard-ts as the server writes the server frames', async () => {
    const [node, peer] = Pipe();
    const server = (async () => {
      await deliverChallenge(node, KEY, { digest: serverChallenge.digest, randomBytes: () => serverChallenge.random });
      await answerChallenge(node, KEY);
    })();
    const [result] = await Promise.all([outcome(server), script(peer, t, 'C')]);
    expect(result).toBe(t.server);
    node.close();
    peer.close();
  });

  test('billiard-ts as the client writes the client frames', async () => {
    const [node, peer] = Pipe();
    const client = (async () => {
      await answerChallenge(node, wrongKey ? WRONG_KEY : KEY);
      await deliverChallenge(node, wrongKey ? WRONG_KEY : KEY, { digest: clientChallenge!.digest, randomBytes: () => clientChallenge!.random });
    })();
    const [result] = await Promise.all([outcome(client), script(peer, t, 'S')]);
    expect(result).toBe(t.client);
    node.close();
    peer.close();
  });
});

describe('challenge randomness', () => {
  test('every challenge is fresh: 300 handshakes (over 10 refills of the random pool), 300 distinct nonces of the right size', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const [server, client] = Pipe();
      const legacy = i % 2 === 0;
      const delivering = deliverChallenge(server, KEY, legacy ? { digest: 'legacy' } : {});
      const frame = Buffer.from(await client.recvBytes());
      expect(frame.subarray(0, 11).toString('latin1')).toBe('#CHALLENGE#');
      const nonce = legacy ? frame.subarray(11) : frame.subarray(11 + '{sha256}'.length);
      expect(nonce.length).toBe(legacy ? 20 : 40);
      seen.add(nonce.toString('hex'));
      client.close();
      await delivering.catch(() => undefined);
      server.close();
    }
    expect(seen.size).toBe(300);
  });
});
