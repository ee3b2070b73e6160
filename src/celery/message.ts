/**
 * Celery's task message, protocol v2, inside kombu's Redis envelope
 * (spec/celery.md 1.3–1.7): building one as a 5.2 client does, and reading
 * one as a worker must, where every byte may be hostile (5.8, R-24).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';

import { dumps } from '../pickle/pickler.js';
import { PyTuple, tuple } from '../pickle/types.js';
import { loads, type LoadLimits } from '../pickle/unpickler.js';
import { isoUtc, pyJsonDumps, pyJsonLoads } from './pyjson.js';
import { argsRepr, pyRepr } from './repr.js';

export const JSON_TYPE = 'application/json';
export const PICKLE_TYPE = 'application/x-python-serialize';

/** A task or control message that cannot be used; `reason` says why. */
export class MessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MessageError';
  }
}

/** A content type the worker does not accept (kombu's `ContentDisallowed`). */
export class ContentDisallowed extends MessageError {
  constructor(message: string) {
    super(message);
    this.name = 'ContentDisallowed';
  }
}

/** A body that does not decode (kombu's `DecodeError`). */
export class DecodeError extends MessageError {
  constructor(message: string) {
    super(message);
    this.name = 'DecodeError';
  }
}

export type Serializer = 'json' | 'pickle';

/** kombu's envelope, parsed. */
export interface Envelope {
  body: string;
  'content-encoding': string;
  'content-type': string;
  headers: Record<string, unknown>;
  properties: Record<string, unknown> & { delivery_info: { exchange: string; routing_key: string; [k: string]: unknown }; delivery_tag: string };
}

/** A task signature as Celery writes it in JSON (1.6). */
export interface Signature {
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  options: Record<string, unknown>;
  subtask_type: string | null;
  immutable: boolean;
}

/** `embed`: what runs after the task. */
export interface Embed {
  callbacks: Signature[] | null;
  errbacks: Signature[] | null;
  chain: Signature[] | null;
  chord: Signature | null;
}

let origin: string | null = null;

/** The sender's node name for the `origin` header: `gen<pid>@<host>` (looked up once). */
export function originName(): string {
  origin ??= `gen${process.pid}@${hostname()}`;
  return origin;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });
/** Message pickles load strictly (unregistered globals refused); frozen, so that loads() resolves it once. */
const STRICT = Object.freeze({ strict: true });

/** Bytes shown in a log line about a bad message: at most `max`, the rest counted. */
export function truncated(raw: Uint8Array | string, max = 256): string {
  const text = typeof raw === 'string' ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1');
  return text.length > max ? `${JSON.stringify(text.slice(0, max))}... (${text.length} bytes)` : JSON.stringify(text);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Parses one list element as an envelope. Everything the worker needs to
 * record and acknowledge it must be there (a delivery tag, delivery_info's
 * exchange and routing key); a body is checked later.
 */
export function parseEnvelope(raw: Uint8Array): Envelope {
  let text: string;
  try {
    text = UTF8.decode(raw);
  } catch {
    throw new MessageError('the message is not UTF-8 text');
  }
  let env: unknown;
  try {
    env = pyJsonLoads(text);
  } catch (e) {
    throw new MessageError(`the message is not JSON (${(e as Error).message})`);
  }
  if (!isRecord(env)) throw new MessageError('the message is not a JSON object');
  if (typeof env.body !== 'string') throw new MessageError('the message has no body string');
  if (!isRecord(env.properties)) throw new MessageError('the message has no properties');
  const props = env.properties;
  if (!isRecord(props.delivery_info)) throw new MessageError('the message has no properties.delivery_info');
  if (typeof props.delivery_info.exchange !== 'string' || typeof props.delivery_info.routing_key !== 'string') {
    throw new MessageError('properties.delivery_info has no exchange and routing_key strings');
  }
  if (typeof props.delivery_tag !== 'string' || props.delivery_tag === '') throw new MessageError('the message has no delivery_tag');
  if (env.headers === undefined || env.headers === null) env.headers = {};
  if (!isRecord(env.headers)) throw new MessageError('the message headers are not an object');
  if (typeof env['content-type'] !== 'string') env['content-type'] = JSON_TYPE;
  if (typeof env['content-encoding'] !== 'string') env['content-encoding'] = 'utf-8';
  return env as unknown as Envelope;
}

/** Decodes an envelope's body bytes (base64 unless body_encoding says otherwise). */
export function bodyBytes(env: Envelope): Uint8Array {
  const encoding = env.properties.body_encoding;
  if (encoding === 'base64') return new Uint8Array(Buffer.from(env.body, 'base64'));
  return new TextEncoder().encode(env.body);
}

/**
 * Decodes a body by content type; only the types in `accept` are read.
 * Pickles resolve only registered globals, within the unpickler's default
 * limits or `limits`.
 */
export function decodeBody(env: Envelope, accept: ReadonlySet<string>, limits?: Readonly<LoadLimits>): unknown {
  const type = env['content-type'];
  if (!accept.has(type)) throw new ContentDisallowed(`Refusing to deserialize untrusted content of type ${type} (${type})`);
  const bytes = bodyBytes(env);
  if (type === JSON_TYPE) {
    try {
      return pyJsonLoads(UTF8.decode(bytes));
    } catch (e) {
      throw new DecodeError(`Can't decode message body: ${(e as Error).message}`);
    }
  }
  if (type === PICKLE_TYPE) {
    try {
      return loads(bytes, limits === undefined ? STRICT : { ...limits, strict: true });
    } catch (e) {
      throw new DecodeError(`Can't decode message body: ${(e as Error).message}`);
    }
  }
  throw new ContentDisallowed(`no decoder for content type ${type}`);
}

/** The three parts of a protocol-2 task body. */
export interface TaskBody {
  args: unknown[];
  kwargs: Record<string, unknown>;
  embed: Embed;
}

function toRecord(v: unknown): Record<string, unknown> | null {
  if (v instanceof Map) {
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [k, x] of v) {
      if (typeof k !== 'string') return null;
      out[k] = x;
    }
    return out;
  }
  return isRecord(v) ? v : null;
}

/** Checks a decoded body is `[args, kwargs, embed]` (JSON list or pickled tuple). */
export function taskBody(decoded: unknown): TaskBody {
  if (!Array.isArray(decoded) || decoded.length !== 3) {
    throw new DecodeError(`the task body is not [args, kwargs, embed] (got ${Array.isArray(decoded) ? `${decoded.length} elements` : typeof decoded})`);
  }
  const [args, kwargs, embed] = decoded as unknown[];
  if (!Array.isArray(args)) throw new DecodeError('the task args are not a list');
  const kw = toRecord(kwargs ?? {});
  if (kw === null) throw new DecodeError('the task kwargs are not a dict with string keys');
  const em = toRecord(embed ?? {});
  if (em === null) throw new DecodeError('the task embed is not a dict');
  return {
    args: [...args],
    kwargs: kw,
    embed: {
      callbacks: signatureList(em.callbacks),
      errbacks: signatureList(em.errbacks),
      chain: signatureList(em.chain),
      chord: em.chord === null || em.chord === undefined ? null : signature(em.chord),
    },
  };
}

/** Reads a signature (a dict with a task name). */
export function signature(v: unknown): Signature {
  const r = toRecord(v);
  if (r === null || typeof r.task !== 'string') throw new DecodeError('a signature is not a dict with a task name');
  const kwargs = toRecord(r.kwargs ?? {});
  const options = toRecord(r.options ?? {});
  return {
    task: r.task,
    args: Array.isArray(r.args) ? [...(r.args as unknown[])] : [],
    kwargs: kwargs ?? {},
    options: options ?? {},
    subtask_type: typeof r.subtask_type === 'string' ? r.subtask_type : null,
    immutable: r.immutable === true,
  };
}

function signatureList(v: unknown): Signature[] | null {
  if (v === null || v === undefined) return null;
  if (!Array.isArray(v)) return [signature(v)];
  return v.map(signature);
}

/** What a task message is built from (a client's `apply_async`, a retry, a chain step). */
export interface TaskMessageInit {
  name: string;
  id?: string;
  args?: readonly unknown[];
  kwargs?: Record<string, unknown>;
  embed?: Partial<Embed> | null;
  /** Run at (a Date or Unix milliseconds)... */
  eta?: Date | number | null;
  /** ...or after this many seconds. */
  countdown?: number | null;
  /** Expire at a Date/ms, or after this many seconds when a number below 1e9. */
  expires?: Date | number | null;
  /** Hard time limit, seconds. */
  timeLimit?: number | null;
  /** Soft time limit, seconds. */
  softTimeLimit?: number | null;
  retries?: number;
  rootId?: string | null;
  parentId?: string | null;
  group?: string | null;
  groupIndex?: number | null;
  shadow?: string | null;
  ignoreResult?: boolean;
  priority?: number | null;
  /** The queue (routing key with the nameless exchange); default `celery`. */
  queue?: string;
  serializer?: Serializer;
  origin?: string;
  replyTo?: string;
  /** Extra properties placed after `reply_to` (a retry copies `replaced_task_nesting`, `origin`). */
  extraProperties?: Record<string, unknown>;
}

/** A message ready to push. */
export interface TaskMessage {
  id: string;
  queue: string;
  priority: number;
  deliveryTag: string;
  /** The envelope's JSON text. */
  text: string;
}

const DEFAULT_REPLY_TO = randomUUID();

function toDate(v: Date | number): Date {
  return v instanceof Date ? v : new Date(v);
}

/** Builds a protocol-2 task message exactly as a Celery 5.2.6 client lays it out (1.3–1.6). */
export function buildTaskMessage(init: TaskMessageInit): TaskMessage {
  const id = init.id ?? randomUUID();
  const args = init.args ?? [];
  const kwargs = init.kwargs ?? {};
  const embed: Embed = {
    callbacks: init.embed?.callbacks ?? null,
    errbacks: init.embed?.errbacks ?? null,
    chain: init.embed?.chain ?? null,
    chord: init.embed?.chord ?? null,
  };
  const now = Date.now();
  let eta: Date | null = null;
  if (init.eta !== undefined && init.eta !== null) eta = toDate(init.eta);
  else if (init.countdown !== undefined && init.countdown !== null) eta = new Date(now + init.countdown * 1000);
  let expires: Date | null = null;
  let expiration: string | null = null;
  if (init.expires !== undefined && init.expires !== null) {
    if (typeof init.expires === 'number' && init.expires < 1e9) {
      expires = new Date(now + init.expires * 1000);
      expiration = String(Math.round(init.expires * 1000));
    } else {
      expires = toDate(init.expires);
      expiration = String(Math.max(0, expires.getTime() - now));
    }
  }
  const serializer = init.serializer ?? 'json';
  let body: Uint8Array;
  if (serializer === 'pickle') {
    body = dumps(tuple(PyTuple.from(args), kwargs, embed), { protocol: 4 });
  } else {
    body = new TextEncoder().encode(pyJsonDumps([args, kwargs, embed]));
  }
  const headers = {
    lang: 'py',
    task: init.name,
    id,
    shadow: init.shadow ?? null,
    eta: eta === null ? null : isoUtc(eta),
    expires: expires === null ? null : isoUtc(expires),
    group: init.group ?? null,
    group_index: init.groupIndex ?? null,
    retries: init.retries ?? 0,
    timelimit: [init.timeLimit ?? null, init.softTimeLimit ?? null],
    root_id: init.rootId ?? id,
    parent_id: init.parentId ?? null,
    argsrepr: argsRepr(args),
    kwargsrepr: pyRepr(kwargs),
    origin: init.origin ?? originName(),
    ignore_result: init.ignoreResult ?? false,
  };
  const queue = init.queue ?? 'celery';
  const priority = Math.max(0, Math.min(9, Math.trunc(init.priority ?? 0)));
  const deliveryTag = randomUUID();
  const properties: Record<string, unknown> = { correlation_id: id, reply_to: init.replyTo ?? DEFAULT_REPLY_TO };
  if (init.extraProperties) Object.assign(properties, init.extraProperties);
  properties.delivery_mode = 2;
  if (expiration !== null) properties.expiration = expiration;
  properties.delivery_info = { exchange: '', routing_key: queue };
  properties.priority = priority;
  properties.body_encoding = 'base64';
  properties.delivery_tag = deliveryTag;
  const envelope = {
    body: Buffer.from(body).toString('base64'),
    'content-encoding': serializer === 'pickle' ? 'binary' : 'utf-8',
    'content-type': serializer === 'pickle' ? PICKLE_TYPE : JSON_TYPE,
    headers,
    properties,
  };
  return { id, queue, priority, deliveryTag, text: pyJsonDumps(envelope) };
}

/** A JSON-bodied envelope of a control or event message (4.2, 4.3, 4.5). */
export function buildJsonEnvelope(body: unknown, headers: Record<string, unknown>, properties: Record<string, unknown>): string {
  return pyJsonDumps({
    body: Buffer.from(pyJsonDumps(body)).toString('base64'),
    'content-encoding': 'utf-8',
    'content-type': JSON_TYPE,
    headers,
    properties: { ...properties, body_encoding: 'base64', delivery_tag: randomUUID() },
  });
}

/** Parses a date header (ISO 8601; without an offset it is local time, as Celery reads it). Null when absent; throws on garbage. */
export function parseDateHeader(v: unknown, name: string): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') throw new DecodeError(`the ${name} header is not a string`);
  // Python writes microseconds; Date.parse wants at most milliseconds.
  const t = Date.parse(v.replace(/(\.\d{3})\d+/, '$1'));
  if (Number.isNaN(t)) throw new DecodeError(`the ${name} header ${JSON.stringify(v)} is not an ISO 8601 date`);
  return t;
}
