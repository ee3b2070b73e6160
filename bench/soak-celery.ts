/**
 * `npm run soak:celery`: hostile messages against the Node Celery worker. A
 * private redis-server and a Worker (its pool processes included) get
 * `--messages` list elements (default 20,000), each a valid task message
 * mutated at random: bytes flipped, cut short, fields removed or given the
 * wrong JSON type (delivery_info, delivery_tag, headers, body, content-type,
 * timelimit, eta, expires, retries, args, kwargs, embed and its callbacks,
 * chain and chord), pickle bodies of random bytes, huge or negative numbers,
 * unknown tasks, pidbox control messages with garbage. One in ten is left
 * valid (`tasks.add`), and must succeed.
 *
 * Checks, exit 1 on a failure: the worker process never stops consuming
 * (a last valid task succeeds); every element leaves the queue; `unacked`
 * is empty at the end (nothing held for ever); the worker's RSS after the
 * run and a settle grew by less than `--rss-slack-mib` (default 64) over
 * the RSS after a warm-up of valid tasks.
 *
 *   npm run soak:celery [-- --messages 20000 --seed 1 --rss-slack-mib 64]
 */
import { parseArgs } from 'node:util';

import { buildTaskMessage } from '../src/celery/message.js';
import { pyJsonDumps, pyJsonLoads } from '../src/celery/pyjson.js';
import { Celery, Worker } from '../src/celery/index.js';
import { startRedis } from '../test/helpers/celery.js';
import { waitUntil } from '../test/helpers/until.js';

const { values } = parseArgs({ options: { messages: { type: 'string' }, seed: { type: 'string' }, 'rss-slack-mib': { type: 'string' } } });
const total = Number(values.messages ?? 20000);
let seed = Number(values.seed ?? 1) >>> 0 || 1;
const slackMiB = Number(values['rss-slack-mib'] ?? 64);

function rand(): number {
  // xorshift32: reproducible with --seed
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 2 ** 32;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

const WRONG: unknown[] = [null, 0, -1, 1e308, -1e308, 2 ** 53 + 2, 'x', '', [], {}, [1, 2, 3], { a: 1 }, true, 'NaN', '\u0000', 'x'.repeat(5000)];

function mutateJson(env: Record<string, unknown>): Record<string, unknown> {
  const headers = env.headers as Record<string, unknown>;
  const props = env.properties as Record<string, unknown>;
  const body = pyJsonLoads(Buffer.from(env.body as string, 'base64').toString()) as unknown[];
  switch (Math.floor(rand() * 12)) {
    case 0:
      delete (props.delivery_info as Record<string, unknown>)[pick(['exchange', 'routing_key'])];
      break;
    case 1:
      props[pick(['delivery_info', 'delivery_tag', 'body_encoding', 'priority'])] = pick(WRONG);
      break;
    case 2:
      headers[pick(['task', 'id', 'timelimit', 'eta', 'expires', 'retries', 'group', 'group_index', 'root_id', 'parent_id', 'ignore_result'])] = pick(WRONG);
      break;
    case 3:
      env[pick(['headers', 'properties', 'body', 'content-type', 'content-encoding'])] = pick(WRONG);
      break;
    case 4:
      body[Math.floor(rand() * 3)] = pick(WRONG);
      env.body = Buffer.from(pyJsonDumps(body)).toString('base64');
      break;
    case 5: {
      const embed = (body[2] ?? {}) as Record<string, unknown>;
      embed[pick(['callbacks', 'errbacks', 'chain', 'chord'])] = pick([pick(WRONG), [pick(WRONG)], [{ task: pick(WRONG), args: pick(WRONG), options: pick(WRONG) }], { task: 'tasks.add', args: [1], options: { task_id: pick(WRONG) } }]);
      body[2] = embed;
      env.body = Buffer.from(pyJsonDumps(body)).toString('base64');
      headers.group = pick([null, 'g', 'g2']);
      headers.group_index = pick([0, 1, -5, 'x']);
      break;
    }
    case 6:
      body.length = Math.floor(rand() * 4);
      env.body = Buffer.from(pyJsonDumps(body)).toString('base64');
      break;
    case 7:
      env['content-type'] = 'application/x-python-serialize';
      env.body = Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256))).toString('base64');
      break;
    case 8:
      headers.task = pick(['tasks.nope', 'tasks.echo', 'tasks.boomJs', '', 'constructor', '__proto__', 'tasks.add']);
      break;
    case 9:
      headers.timelimit = [pick([-1, 0, 1e9, 'x', null]), pick([-1, 0, 1e9, 'x', null])];
      break;
    case 10:
      headers.eta = pick(['2000-01-01T00:00:00', 'not a date', '9999-12-31T23:59:59+00:00', '']);
      headers.expires = pick([null, '2000-01-01T00:00:00+00:00', 'garbage']);
      break;
    default:
      env.body = Buffer.from(pick(['[', 'null', '"x"', '[[], {}, {}, 1]', '\u00ff\u00fe'])).toString('base64');
  }
  return env;
}

function hostile(i: number): string | Buffer {
  const msg = buildTaskMessage({ name: 'tasks.add', args: [i, 1] });
  const r = rand();
  if (r < 0.1) return msg.text;
  if (r < 0.2) {
    const b = Buffer.from(msg.text);
    for (let k = 0; k < 1 + Math.floor(rand() * 8); k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    return b;
  }
  if (r < 0.27) return Buffer.from(msg.text).subarray(0, Math.floor(rand() * msg.text.length));
  return pyJsonDumps(mutateJson(pyJsonLoads(msg.text) as Record<string, unknown>));
}

function rssMiB(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

const redis = await startRedis();
let failed = false;
const check = (ok: boolean, what: string): void => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failed = true;
};
let errors = 0;
const criticals = new Map<string, number>();
const worker = new Worker({
  app: new URL('../test/peers/celery/tasks.ts', import.meta.url),
  broker: redis.url(0),
  resultBackend: redis.url(1),
  concurrency: 2,
  accept: ['json', 'pickle'],
  heartbeat: false,
  log: (level, message) => {
    // Malformed messages are logged at CRITICAL on purpose (as Celery's "Can't decode"); what counts here is the worker's own failures.
    if (level !== 'critical' || !/^error (while handling|after task)/.test(message)) return;
    errors++;
    const kind = message.replace(/\[[^\]]*\]/g, '[]').replace(/Raw: .*/s, '').slice(0, 160);
    criticals.set(kind, (criticals.get(kind) ?? 0) + 1);
  },
});
await worker.start();
const app = new Celery({ broker: redis.url(0), backend: redis.url(1) });
try {
  for (let i = 0; i < 200; i++) await (await app.sendTask('tasks.add', [i, 1])).get(30);
  const before = rssMiB();
  const t0 = Date.now();
  for (let i = 0; i < total; i += 500) {
    const p = redis.client.pipeline();
    for (let k = i; k < Math.min(total, i + 500); k++) p.lpush('celery', hostile(k));
    // Control messages with garbage, on the pidbox channel.
    p.publish('/0.celery.pidbox', pick(['garbage', pyJsonDumps({ body: Buffer.from(pyJsonDumps({ method: pick(['ping', 'revoke', 'hello', 'query_task', 'nope']), arguments: pick(WRONG), destination: pick(WRONG), pattern: pick(WRONG), matcher: pick(['pcre', 'glob', 'x']), reply_to: pick(WRONG) })).toString('base64'), 'content-type': 'application/json', 'content-encoding': 'utf-8', headers: { clock: pick(WRONG) }, properties: { body_encoding: 'base64', delivery_tag: 't', delivery_info: { exchange: 'celery.pidbox', routing_key: '' } } })]));
    await p.exec();
    await waitUntil(async () => (await redis.client.llen('celery')) < 1000, 600, 'the worker to keep up');
  }
  const ok = await app.sendTask('tasks.add', [40, 2]);
  const last = await ok.get(600).catch((e: unknown) => e);
  check(last === 42, `a valid task after ${total} hostile messages succeeds (${String(last)}), in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await waitUntil(async () => (await redis.client.llen('celery')) === 0, 120, 'the queue to empty').catch(() => {});
  check((await redis.client.llen('celery')) === 0, 'every element left the queue');
  // ETAs in the future (far or garbled) may be held; everything else is acknowledged.
  const scheduled = ((await app.broadcast('scheduled', { destination: [worker.hostname], timeout: 2 }))[0]?.[worker.hostname] as unknown[] | undefined)?.length ?? 0;
  await waitUntil(async () => (await redis.client.hlen('unacked')) <= scheduled, 60, 'unacked to drain').catch(() => {});
  const unacked = await redis.client.hlen('unacked');
  check(unacked <= scheduled, `unacked holds only the ${scheduled} tasks scheduled for later (${unacked})`);
  if (unacked > scheduled) {
    const reserved = (await app.broadcast('reserved', { destination: [worker.hostname], timeout: 1 }))[0]?.[worker.hostname];
    const active = (await app.broadcast('active', { destination: [worker.hostname], timeout: 1 }))[0]?.[worker.hostname];
    console.log('     reserved:', JSON.stringify(reserved).slice(0, 600), '\n     active:', JSON.stringify(active).slice(0, 600));
    for (const [tag, value] of Object.entries(await redis.client.hgetall('unacked')).slice(0, 6)) console.log('     unacked', tag, value.slice(0, 300));
  }
  check(errors === 0, `no critical error logged (${errors})`);
  for (const [kind, n] of [...criticals].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`     ${n} x ${kind}`);
  global.gc?.();
  await new Promise((r) => setTimeout(r, 2000));
  const after = rssMiB();
  check(after - before < slackMiB, `RSS ${before.toFixed(0)} MiB -> ${after.toFixed(0)} MiB (slack ${slackMiB} MiB)`);
} finally {
  await app.close();
  worker.terminate().catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
  await redis.stop();
}
process.exit(failed ? 1 : 0);
