/**
 * A helper process the benchmarks drive with one JSON request per line on its
 * stdin and one JSON answer per line on its stdout (the Python workers of
 * bench/pickle.ts and bench/connection.ts). Its stderr is inherited.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

export class JsonLineWorker {
  readonly #proc: ChildProcessByStdio<Writable, Readable, null>;
  readonly #lines: Interface;
  readonly #waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  readonly #name: string;
  #failed: Error | null = null;
  /** Resolves with the exit code when the process has exited. */
  readonly exited: Promise<number | null>;

  /** `command` is the argv; `name` labels its errors. */
  /** `group`: the process leads a process group of its own, so that `killGroup` ends its children too. */
  constructor(command: readonly string[], name: string, options?: { cwd?: string; group?: boolean }) {
    this.#name = name;
    this.#proc = spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'inherit'], cwd: options?.cwd, detached: options?.group ?? false });
    this.#lines = createInterface({ input: this.#proc.stdout });
    this.#lines.on('line', (line) => this.#waiting.shift()?.resolve(line));
    const fail = (e: Error): void => {
      this.#failed ??= e;
      for (const w of this.#waiting.splice(0)) w.reject(e);
    };
    this.#proc.on('error', fail);
    this.#proc.stdin.on('error', () => undefined); // a dead worker is reported by 'exit'
    this.exited = new Promise((resolve) =>
      this.#proc.on('exit', (code) => {
        fail(new Error(`${command.join(' ')} exited (${code})`));
        resolve(code);
      }),
    );
  }

  /** True once the process failed to start or exited. */
  get failed(): boolean {
    return this.#failed !== null;
  }

  /** Sends `req` and resolves with the answer; an answer with `error` rejects. */
  async request<T>(req: Record<string, unknown>): Promise<T> {
    if (this.#failed) throw this.#failed;
    const line = new Promise<string>((resolve, reject) => this.#waiting.push({ resolve, reject }));
    this.#proc.stdin.write(`${JSON.stringify(req)}\n`);
    const answer = JSON.parse(await line) as T & { error?: string };
    if (answer.error !== undefined) throw new Error(`${this.#name}: ${answer.error} (request ${JSON.stringify(req)})`);
    return answer;
  }

  /** Writes `req` without waiting for an answer (a farewell), when the process is still there. */
  tell(req: Record<string, unknown>): void {
    if (this.#failed === null) this.#proc.stdin.write(`${JSON.stringify(req)}\n`);
  }

  /** Ends stdin and stops reading. */
  end(): void {
    this.#proc.stdin.end();
    this.#lines.close();
  }

  kill(signal?: NodeJS.Signals): void {
    this.#proc.kill(signal);
  }

  /** SIGKILL to its whole process group (made with `group`): it and every process it started. */
  killGroup(): void {
    if (this.#proc.pid === undefined) return;
    try {
      process.kill(-this.#proc.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
