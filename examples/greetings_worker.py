"""The Python half of examples/queue-greetings-python.ts: the worker of
billiard's first example, run in a billiard child whose parent is Node. The
queue it gets is the Node parent's (billiard rebuilds it over the same pipe
and semaphores)."""
import os


def worker_task(name, result_queue):
    result_queue.put(f'Hello, {name}! (from Python process {os.getpid()})')
