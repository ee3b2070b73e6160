/**
 * Targets of the process benchmark, in plain JavaScript so that children need
 * no TypeScript loader (as a user's compiled code would not).
 */

/** Sends one message, then returns (the child exits). */
export async function hello(conn) {
  await conn.send('hi');
  conn.close();
}

/** Sends one message, then idles until the parent says 'bye' (for RSS). */
export async function helloThenIdle(conn) {
  await conn.send('hi');
  await conn.recv();
}
