"""A real Celery 5 client that the Node-side tests drive.

    python3 client.py '<json list of operations>'

prints one JSON line per operation. Operations:

    {"task": "tasks.add", "args": [2, 3], "kwargs": {}, "options": {...}, "timeout": 10}
        send_task(...).get(timeout): {"ok": value, "state": ..., "id": ...}
        or {"error": {"module", "name", "args", "traceback", "builtin"}, ...}
    {"send": "tasks.add", "args": [2, 3], "options": {...}}
        send_task only: {"id": ...}
    {"chain": [["tasks.add", [1, 2], {"queue": "node"}], ["tasks.mul", [10], {}]], "timeout": 10}
    {"link": {"task", "args", "link": [name, args, callback_id], "link_error": [name, args, errback_id]}}
        the task's result, then its callbacks' results by the ids given
    {"chord": {"header": [[name, args, options], ...], "body": [name, args, options]}, "timeout": 10}
    {"evil": "/path/of/a/file/the/pickle/would/create", "timeout": 10}
        add.apply_async((Evil(), 1), serializer='pickle') where Evil reduces to os.system
    {"control": "ping" | "active" | "stats" | ..., "timeout": 1}
    {"revoke_running": {"task": "tasks.sleeper", "args": [30]}, "timeout": 10}
        waits until a worker reports it active, then revoke(terminate=True)
"""
import builtins
import json
import os
import sys
import time

from celery import chord, signature
from tasks import app


def describe_error(exc, result):
    return {
        'module': type(exc).__module__,
        'name': type(exc).__name__,
        'args': [a if isinstance(a, (int, float, str, type(None))) else repr(a) for a in exc.args],
        'traceback': result.traceback if result is not None else None,
        'builtin': type(exc) is getattr(builtins, type(exc).__name__, None),
    }


def wait(result, timeout):
    try:
        value = result.get(timeout=timeout)
        return {'ok': value, 'state': result.state, 'id': result.id}
    except Exception as exc:  # the test reads what came back
        return {'error': describe_error(exc, result), 'state': result.state, 'id': result.id}


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, ('touch ' + self.path,))


def run(op):
    timeout = op.get('timeout', 10)
    if 'task' in op:
        options = dict(op.get('options', {}))
        r = app.send_task(op['task'], args=op.get('args', []), kwargs=op.get('kwargs', {}), **options)
        return wait(r, timeout)
    if 'send' in op:
        # A tuple, as add.delay(2, 3) gives (argsrepr "(2, 3)", a pickled tuple).
        r = app.send_task(op['send'], args=tuple(op.get('args', [])), kwargs=op.get('kwargs', {}), **dict(op.get('options', {})))
        return {'id': r.id}
    if 'chain' in op:
        steps = [signature(name, args=args, options=opts, app=app) for name, args, opts in op['chain']]
        c = steps[0]
        for s in steps[1:]:
            c = c | s
        return wait(c.apply_async(), timeout)
    if 'chord' in op:
        spec = op['chord']
        header = [signature(name, args=args, options=opts, app=app) for name, args, opts in spec['header']]
        name, args, opts = spec['body']
        return wait(chord(header)(signature(name, args=args, options=opts, app=app)), timeout)
    if 'link' in op:
        # {"link": {"task", "args", "link": [name, args, callback_id], "link_error": [name, args, errback_id]}}
        spec = op['link']
        options = {}
        ids = []
        for key in ('link', 'link_error'):
            if key in spec:
                name, args, cid = spec[key]
                options[key] = signature(name, args=args, options={'task_id': cid}, app=app)
                ids.append(cid)
        r = app.send_task(spec['task'], args=spec.get('args', []), **options)
        out = wait(r, timeout)
        out['callbacks'] = [wait(app.AsyncResult(cid), op.get('callback_timeout', timeout)) for cid in ids]
        return out
    if 'evil' in op:
        r = app.send_task('tasks.add', args=(Evil(op['evil']), 1), serializer='pickle')
        return wait(r, timeout)
    if 'control' in op:
        insp = app.control.inspect(timeout=timeout)
        if op['control'] == 'ping':
            return {'ok': app.control.ping(timeout=timeout)}
        return {'ok': getattr(insp, op['control'])()}
    if 'broadcast' in op:
        # {"broadcast": method, "arguments": {...}, "pattern": ..., "matcher": ..., "timeout": 1}
        return {'ok': app.control.broadcast(op['broadcast'], arguments=op.get('arguments', {}), reply=True, timeout=timeout,
                                            pattern=op.get('pattern'), matcher=op.get('matcher'))}
    if 'started' in op:
        # Waits until the task reports STARTED: {"state", "info"} at that moment, then its result.
        spec = op['started']
        r = app.send_task(spec['task'], args=spec.get('args', []))
        deadline = time.time() + timeout
        seen = None
        while time.time() < deadline:
            if r.state == 'STARTED':
                seen = {'state': r.state, 'info': r.info}
                break
            time.sleep(0.05)
        out = wait(r, timeout)
        out['started'] = seen
        return out
    if 'revoke_running' in op:
        spec = op['revoke_running']
        r = app.send_task(spec['task'], args=spec.get('args', []))
        deadline = time.time() + timeout
        while time.time() < deadline:
            active = app.control.inspect(timeout=0.5).active() or {}
            if any(t['id'] == r.id for tasks in active.values() for t in tasks):
                break
        replies = app.control.revoke(r.id, terminate=True, signal='SIGTERM', reply=True, timeout=1)
        out = wait(r, timeout)
        out['replies'] = replies
        return out
    raise ValueError('unknown operation %r' % (op,))


if __name__ == '__main__':
    for op in json.loads(sys.argv[1]):
        print(json.dumps(run(op), default=repr), flush=True)
