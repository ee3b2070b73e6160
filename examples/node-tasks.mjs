// JavaScript tasks for examples/node_pool.py: a real billiard Pool (Python) with Node workers.

export function square(x) {
  return x * x;
}

export async function greet(name, kwargs) {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return `${kwargs?.greeting ?? 'hello'} ${name}, from Node ${process.version} (pid ${process.pid})`;
}
