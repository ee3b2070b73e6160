"""The Python side of examples/celery: a plain Celery 5 app whose tasks the
Node worker serves.

    python3 examples/celery/py_client.py

The broker is $CELERY_BROKER_URL (default redis://127.0.0.1:6379/0).
"""
import os

from celery import Celery

broker = os.environ.get('CELERY_BROKER_URL', 'redis://127.0.0.1:6379/0')
app = Celery('tasks', broker=broker, backend=broker)


@app.task
def add(x, y):
    """Declared here so that Python can call add.delay(); the Node worker runs it."""


@app.task
def slow(seconds):
    pass


@app.task
def careful(name):
    pass


if __name__ == '__main__':
    print('add.delay(2, 3) ->', add.delay(2, 3).get(timeout=10))
    print('slow(10) with a 1 s soft limit ->', slow.apply_async((10,), soft_time_limit=1).get(timeout=10))
    print('careful.delay("Celery") ->', careful.delay('Celery').get(timeout=10))
