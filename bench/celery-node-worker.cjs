// The celery-node worker of `npm run bench -- celery`: tasks.add on one event loop.
const celery = require('celery-node');

const worker = celery.createWorker(process.env.CELERY_BROKER, process.env.CELERY_BACKEND, 'celery');
worker.register('tasks.add', (a, b) => a + b);
worker.start();
worker.isReady().then(() => process.stderr.write(' ready.\n'));
process.on('SIGTERM', () => process.exit(0));
