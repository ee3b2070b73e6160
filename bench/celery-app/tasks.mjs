// The benchmark's Celery app for the compiled worker command (bench/celery.ts):
// plain JavaScript, as an installed user's app would be, so that neither the
// worker nor its pool processes load a TypeScript loader. Its tasks are named
// tasks.<export>, as test/peers/celery/tasks.ts's are.
export function add(x, y) {
  return x + y;
}
