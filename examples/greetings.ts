/**
 * Three children each send a greeting back over their own Pipe; the parent
 * collects the greetings and joins the children.
 *
 *   npx tsx examples/greetings.ts
 */
import { currentProcess, isMainProcess, Pipe, Process, type Connection } from '../src/index.js';

/** Runs in each child: the child imports this module and calls its export. */
export async function greet(conn: Connection, who: string): Promise<void> {
  await conn.send(`hello ${who}, from ${currentProcess().name} (pid ${process.pid})`);
  conn.close();
}

if (isMainProcess(import.meta)) {
  const children: Array<{ process: Process; conn: Connection }> = [];
  for (const who of ['Ada', 'Grace', 'Guido']) {
    const [parentEnd, childEnd] = Pipe();
    const p = new Process({ target: greet, args: [childEnd, who] });
    p.start();
    childEnd.close(); // the child has its own copy
    children.push({ process: p, conn: parentEnd });
  }
  for (const { conn } of children) {
    console.log(await conn.recv());
    conn.close();
  }
  for (const { process: p } of children) await p.join();
  console.log(`exit codes: ${children.map(({ process: p }) => p.exitcode).join(',')}`);
}
