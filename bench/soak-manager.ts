/**
 * `npm run soak:manager`: a bounded soak of the Node manager server. A
 * SyncManager is started (its server runs in a child process), then several
 * load processes (bench/soak-manager-client.ts) make 10,000 requests between
 * them, one after another each: good proxy calls whose answers are checked
 * (dict setItem/getItem, Queue put/get, list append/len, create + use +
 * decref) mixed with malformed requests on raw connections (garbage bytes,
 * non-tuples, 3-tuples, unknown public methods, unknown idents, non-str
 * method names, methods not exposed, args not a tuple, kwds not a dict, a
 * hang-up during a blocking get, connections that never handshake, wrong
 * authkeys, oversize length prefixes). The server process's RSS (VmRSS) and
 * open sockets (/proc/<pid>/fd) are read before the load, right after it and
 * after a settle; a last create + use + decref round and a `dummy` request
 * must still succeed.
 *
 * One load process (`--python 1`) is Python: billiard's SyncManager and
 * Connection (bench/py_soak_manager_client.py) making the same kinds of
 * requests, 2% of them by default (`--python-share 0.02`).
 *
 *   npm run soak:manager [-- --requests 10000 --clients 4 --python 1 --python-share 0.02 --settle 2 --rss-slack-mib 50 --socket-slack 2 --timeout 120]
 *   SOAK_REQUESTS=... SOAK_CLIENTS=... SOAK_PYTHON=... SOAK_SETTLE=... npm run soak:manager
 *
 * It prints a summary and exits 1 when a check fails: a load process that
 * did not finish, a good request answered wrongly or failing, a malformed
 * request not rejected as the protocol says (`#TRACEBACK` or `#ERROR`, the
 * serving connection still usable after it, the control connection closed),
 * more sockets after the settle than before (plus the slack), RSS grown by
 * more than the slack, objects left on the server, or a server that no
 * longer answers. Not part of `npm test`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { Client, Pipe, Process, SyncManager, tuple, type Address } from '../src/index.js';
import { findPythonSync } from '../src/process/python.js';
import { BAD_KINDS, GOOD_KINDS, SCHEDULE, soakClient, type ClientReport } from './soak-manager-client.js';

function option(flag: string, env: string, fallback: number): number {
  const i = process.argv.indexOf(`--${flag}`);
  const raw = i >= 0 ? process.argv[i + 1] : process.env[env];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${flag} / ${env} must be a non-negative number, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

const REQUESTS = option('requests', 'SOAK_REQUESTS', 10_000);
const CLIENTS = Math.floor(option('clients', 'SOAK_CLIENTS', 4));
const PY_CLIENTS = Math.floor(option('python', 'SOAK_PYTHON', 1));
/** The part of the requests the Python processes make between them (billiard's clients take ~44 ms per new connection: see bench/README.md). */
const PY_SHARE = Math.min(1, option('python-share', 'SOAK_PYTHON_SHARE', 0.02));
const PY_SCRIPT = fileURLToPath(new URL('./py_soak_manager_client.py', import.meta.url));
const SETTLE = option('settle', 'SOAK_SETTLE', 2);
const RSS_SLACK_MIB = option('rss-slack-mib', 'SOAK_RSS_SLACK_MIB', 50);
const SOCKET_SLACK = option('socket-slack', 'SOAK_SOCKET_SLACK', 2);
const TIMEOUT = option('timeout', 'SOAK_TIMEOUT', Math.max(120, REQUESTS / 20));
const KEY = randomBytes(32);

interface Sample {
  rssKiB: number;
  sockets: number;
  fds: number;
}

/** The server process's VmRSS and open descriptors (sockets among them), from /proc. */
function sample(pid: number): Sample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? NaN);
  let sockets = 0;
  let fds = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      fds++;
      if (target.startsWith('socket:')) sockets++;
    } catch {
      // closed between readdir and readlink
    }
  }
  return { rssKiB, sockets, fds };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `p`, or an error when it takes longer than `seconds` (a server that stopped answering). */
function within<T>(p: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${seconds} s`)), seconds * 1000)))]).finally(() => clearTimeout(timer));
}
const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

function add(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** The last round: create + use + decref through proxies, and a `dummy` control request on a raw connection. */
async function finalRound(m: SyncManager, address: Address): Promise<string | null> {
  try {
    const d = await m.dict<string, unknown>({ last: 'round' });
    await d.setItem('n', 42);
    const got = [await d.getItem('last'), await d.getItem('n'), await d.len()];
    await d._decref();
    if (got[0] !== 'round' || got[1] !== 42 || got[2] !== 2) return `the last dict read back ${JSON.stringify(got)}`;
    const c = await Client(address, { authkey: KEY, timeout: 10 });
    try {
      await c.send(tuple(null, 'dummy', tuple(), new Map()));
      const r = (await c.recv()) as unknown[];
      if (r[0] !== '#RETURN' || r[1] !== null) return `dummy answered ${JSON.stringify(r)}`;
    } finally {
      c.close();
    }
    return null;
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
}

/** The Python interpreter with billiard, or null (then no Python load processes). */
function python(): string | null {
  if (PY_CLIENTS === 0) return null;
  try {
    return findPythonSync();
  } catch (e) {
    console.log(`  (no Python with billiard: ${(e as Error).message}; Node load processes only)`);
    return null;
  }
}

/** One load process: a Node Process running soakClient, or a Python one running py_soak_manager_client.py; resolves with its report. */
function loadProcess(kind: 'node' | 'python', w: number, count: number, address: Address, py: string | null): { report: Promise<ClientReport>; kill: () => void; exited: () => Promise<number | null> } {
  if (kind === 'node') {
    const [r, wEnd] = Pipe();
    const p = new Process({ target: soakClient, args: [address, KEY, w, count, wEnd], name: `soak-client-${w}` });
    p.start();
    return {
      report: r.recv().then((raw) => JSON.parse(raw as string) as ClientReport).finally(() => r.close()),
      kill: () => p.kill(),
      exited: async () => {
        await p.join(30);
        return p.exitcode;
      },
    };
  }
  const child = spawn(py!, [PY_SCRIPT, JSON.stringify(address), Buffer.from(KEY).toString('hex'), String(w), String(count), JSON.stringify(SCHEDULE)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    report: exit.then((code) => {
      if (code !== 0) throw new Error(`python exited ${code}`);
      return JSON.parse(out) as ClientReport;
    }),
    kill: () => child.kill('SIGKILL'),
    exited: () => exit,
  };
}

async function main(): Promise<number> {
  const py = python();
  const pyClients = py === null ? 0 : PY_CLIENTS;
  const processes = CLIENTS + pyClients;
  if (processes === 0) {
    console.error('no load processes: --clients and --python are both 0');
    return 2;
  }
  console.log(
    `soak:manager: ${REQUESTS} requests from ${CLIENTS} Node and ${pyClients} Python load processes, ${GOOD_KINDS.length} good kinds x4 and ${BAD_KINDS.length} malformed kinds in rotation (node ${process.version}${py === null ? '' : `, ${py}`})`,
  );
  const m = new SyncManager({ authkey: KEY });
  await m.start();
  const address = m.address as Address;
  const pid = m.process!.pid!;
  try {
    // Warm-up: the manager's own pooled connections exist before the baseline.
    const warm = await finalRound(m, address);
    if (warm !== null) throw new Error(`warm-up failed: ${warm}`);
    await sleep(200);
    const objectsBefore = await m._numberOfObjects();
    const before = sample(pid);

    const t0 = performance.now();
    const pyRequests = CLIENTS === 0 ? REQUESTS : pyClients === 0 ? 0 : Math.round(REQUESTS * PY_SHARE);
    const share = (total: number, n: number, j: number): number => Math.floor(total / n) + (j < total % n ? 1 : 0);
    const clients = Array.from({ length: processes }, (_, w) => {
      const kind = w < CLIENTS ? ('node' as const) : ('python' as const);
      const count = kind === 'node' ? share(REQUESTS - pyRequests, CLIENTS, w) : share(pyRequests, pyClients, w - CLIENTS);
      return { w, kind, ...loadProcess(kind, w, count, address, py) };
    });
    let peakSockets = before.sockets;
    const watch = setInterval(() => {
      try {
        peakSockets = Math.max(peakSockets, sample(pid).sockets);
      } catch {
        // the server is gone: the checks below say so
      }
    }, 100);
    const reports: ClientReport[] = [];
    const failedClients: string[] = [];
    await Promise.all(
      clients.map(async (c) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          reports.push(await Promise.race([c.report, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no report in ${TIMEOUT} s`)), TIMEOUT * 1000)))]));
        } catch (e) {
          failedClients.push(`${c.kind} client ${c.w}: ${(e as Error).message}`);
          c.kill();
        } finally {
          clearTimeout(timer);
        }
        const code = await c.exited();
        if (code !== 0) failedClients.push(`${c.kind} client ${c.w}: exit code ${code}`);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    clearInterval(watch);
    const after = sample(pid);
    const objectsAfter = await within(m._numberOfObjects(), 30, 'number_of_objects');
    await sleep(SETTLE * 1000);
    const settled = sample(pid);
    const objectsSettled = await within(m._numberOfObjects(), 30, 'number_of_objects');
    const final = await within(finalRound(m, address), 30, 'the last round');
    const objectsFinal = await within(m._numberOfObjects(), 30, 'number_of_objects');

    const sent: Record<string, number> = {};
    const ok: Record<string, number> = {};
    const wrong: Record<string, number> = {};
    const errors: Record<string, number> = {};
    const replies: Record<string, number> = {};
    const nodeMs: Record<string, number> = {};
    const nodeSent: Record<string, number> = {};
    const pyMs: Record<string, number> = {};
    const pySent: Record<string, number> = {};
    for (const r of reports) {
      add(r.worker < CLIENTS ? nodeMs : pyMs, r.ms);
      add(r.worker < CLIENTS ? nodeSent : pySent, r.sent);
      add(sent, r.sent);
      add(ok, r.ok);
      add(wrong, r.wrong);
      add(errors, r.errors);
      add(replies, r.replies);
    }
    const sum = (r: Record<string, number>, kinds: readonly string[]): number => kinds.reduce((s, k) => s + (r[k] ?? 0), 0);
    const totalSent = sum(sent, [...GOOD_KINDS, ...BAD_KINDS]);
    const totalErrors = Object.values(errors).reduce((a, b) => a + b, 0);

    const mean = (ms: Record<string, number>, n: Record<string, number>, k: string): string => (n[k] ? (ms[k]! / n[k]!).toFixed(2) : '-');
    console.log('\n  | kind | sent | answered as expected | wrong answers | errors | mean ms (Node) | mean ms (Python) |');
    console.log('  | ---- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const k of [...GOOD_KINDS, ...BAD_KINDS]) {
      const errs = Object.entries(errors).filter(([e]) => e.startsWith(`${k}: `)).reduce((s, [, v]) => s + v, 0);
      console.log(`  | ${k} | ${sent[k] ?? 0} | ${ok[k] ?? 0} | ${wrong[k] ?? 0} | ${errs} | ${mean(nodeMs, nodeSent, k)} | ${mean(pyMs, pySent, k)} |`);
    }
    console.log(`  | **good, total** | ${sum(sent, GOOD_KINDS)} | ${sum(ok, GOOD_KINDS)} | ${sum(wrong, GOOD_KINDS)} | ${Object.entries(errors).filter(([e]) => GOOD_KINDS.some((k) => e.startsWith(`${k}: `))).reduce((s, [, v]) => s + v, 0)} |`);
    console.log(`  | **malformed, total** | ${sum(sent, BAD_KINDS)} | ${sum(ok, BAD_KINDS)} | ${sum(wrong, BAD_KINDS)} | ${Object.entries(errors).filter(([e]) => BAD_KINDS.some((k) => e.startsWith(`${k}: `))).reduce((s, [, v]) => s + v, 0)} |`);

    const rows: Array<[string, string]> = [
      ['requests sent', `${totalSent} (${reports.length} of ${processes} load processes reported: ${CLIENTS} Node, ${pyClients} Python)`],
      ['replies to malformed requests', Object.entries(replies).map(([k, v]) => `${k} ${v}`).join(', ') || '-'],
      ['errors by type', Object.entries(errors).map(([k, v]) => `${k} x${v}`).join('; ') || 'none'],
      ['server RSS before / after / settled', `${mib(before.rssKiB)} / ${mib(after.rssKiB)} / ${mib(settled.rssKiB)}`],
      ['server sockets before / peak / after / settled', `${before.sockets} / ${peakSockets} / ${after.sockets} / ${settled.sockets}`],
      ['server descriptors before / after / settled', `${before.fds} / ${after.fds} / ${settled.fds}`],
      ['objects before / after / settled / final', `${objectsBefore} / ${objectsAfter} / ${objectsSettled} / ${objectsFinal}`],
      ['time per load process', reports.sort((a, b) => a.worker - b.worker).map((r) => `${r.worker < CLIENTS ? 'node' : 'python'} ${Object.values(r.sent).reduce((x, y) => x + y, 0)} in ${r.seconds.toFixed(1)} s`).join(', ')],
      ['wall time', `${seconds.toFixed(2)} s (settle ${SETTLE} s not included)`],
      ['requests/s', (totalSent / seconds).toFixed(0)],
      ['last create+use+decref and dummy', final ?? 'ok'],
    ];
    console.log('');
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
    for (const line of [...failedClients, ...reports.flatMap((r) => r.samples)].slice(0, 20)) console.log(`  ! ${line}`);

    const rssGrowth = settled.rssKiB - before.rssKiB;
    const checks: Array<[string, boolean]> = [
      [`all ${processes} load processes finished and exited 0`, failedClients.length === 0 && reports.length === processes],
      [`${REQUESTS} requests sent`, totalSent === REQUESTS],
      ['no wrong answers', Object.keys(wrong).length === 0],
      ['no errors (good requests all answered; malformed ones rejected as expected)', totalErrors === 0],
      [`sockets after the settle <= before + ${SOCKET_SLACK} (${settled.sockets} vs ${before.sockets})`, settled.sockets <= before.sockets + SOCKET_SLACK],
      [`RSS grew by <= ${RSS_SLACK_MIB} MiB (${(rssGrowth / 1024).toFixed(1)} MiB)`, rssGrowth <= RSS_SLACK_MIB * 1024],
      [`objects after the settle and after the last round = before (${objectsSettled}, ${objectsFinal} vs ${objectsBefore})`, objectsSettled === objectsBefore && objectsFinal === objectsBefore],
      ['the server still answers (create+use+decref, dummy)', final === null],
    ];
    console.log('');
    for (const [name, pass] of checks) console.log(`  ${pass ? 'ok  ' : 'FAIL'}  ${name}`);
    const failed = checks.filter(([, pass]) => !pass).length;
    console.log(failed === 0 ? '\nsoak:manager: passed' : `\nsoak:manager: ${failed} check(s) FAILED`);
    return failed === 0 ? 0 : 1;
  } catch (e) {
    console.log(`\n  FAIL  ${(e as Error).name}: ${(e as Error).message}\n\nsoak:manager: FAILED`);
    return 1;
  } finally {
    await within(m.shutdown(), 10, 'shutdown').catch((e: Error) => {
      console.log(`  ! ${e.message}; SIGKILL to the server process ${pid}`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    });
  }
}

process.exit(await main());
