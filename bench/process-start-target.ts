/** The TypeScript target of bench/process-start.ts: sends one message and returns. */
import type { Connection } from '../src/index.js';

export async function hello(conn: Connection): Promise<void> {
  await conn.send('hi');
  conn.close();
}
