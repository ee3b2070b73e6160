"""The Python side's Celery app for billiard-ts's Celery conformance tests.

Broker, backend and serializers come from the environment (CELERY_BROKER,
CELERY_BACKEND, CELERY_SERIALIZER, CELERY_RESULT_SERIALIZER). Task names
match test/peers/celery/tasks.ts, so either worker can serve them.
"""
import os
import time

from celery import Celery

app = Celery('tasks', broker=os.environ['CELERY_BROKER'], backend=os.environ.get('CELERY_BACKEND') or None)
app.conf.update(
    task_serializer=os.environ.get('CELERY_SERIALIZER', 'json'),
    result_serializer=os.environ.get('CELERY_RESULT_SERIALIZER', 'json'),
    accept_content=['json', 'pickle'],
    broker_transport_options={'visibility_timeout': float(os.environ.get('CELERY_VISIBILITY_TIMEOUT', '3600'))},
    worker_hijack_root_logger=False,
)


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


@app.task
def pid():
    return os.getpid()


@app.task
def echo(value):
    return value
