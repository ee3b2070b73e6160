"""A Python load process of `npm run soak:manager` (bench/soak-manager.ts).

The same requests as bench/soak-manager-client.ts, made with billiard:
good proxy calls through a billiard SyncManager connected to the Node
manager server, malformed requests on billiard Connections and raw sockets.
Prints its report (the same JSON shape as the Node clients') on stdout.

    python3 bench/py_soak_manager_client.py ADDRESS_JSON KEY_HEX WORKER COUNT SCHEDULE_JSON
"""
import json
import os
import socket
import sys
import time

from billiard.connection import Client
from billiard.managers import SyncManager
from billiard.context import AuthenticationError


class Wrong(Exception):
    pass


def main():
    address = tuple(json.loads(sys.argv[1]))
    key = bytes.fromhex(sys.argv[2])
    worker = int(sys.argv[3])
    count = int(sys.argv[4])
    schedule = json.loads(sys.argv[5])
    t0 = time.monotonic()
    report = {'worker': worker, 'pid': os.getpid(), 'sent': {}, 'ok': {}, 'wrong': {}, 'errors': {}, 'samples': [], 'replies': {}, 'seconds': 0, 'ms': {}}

    def bump(r, k):
        r[k] = r.get(k, 0) + 1

    m = SyncManager(address=address, authkey=key)
    m.connect()
    d = m.dict()
    d['fixed'] = 'worker-%d' % worker
    q = m.Queue()
    hq = m.Queue()
    lst = m.list()
    state = {'len': 0}
    did = d._token.id

    def serving():
        conn = Client(address, authkey=key)
        conn.send((None, 'accept_connection', ('soak-py',), {}))
        r = conn.recv()
        if r != ('#RETURN', None):
            conn.close()
            raise Wrong('accept_connection answered %r' % (r,))
        return conn

    def rejection(reply):
        if not isinstance(reply, tuple) or len(reply) != 2:
            raise Wrong('not a 2-tuple reply: %r' % (reply,))
        kind, payload = reply
        if kind == '#TRACEBACK' and isinstance(payload, str):
            return kind
        if kind == '#ERROR' and isinstance(payload, BaseException):
            return kind
        raise Wrong('expected #TRACEBACK or #ERROR, got %r' % (reply,))

    def still_serves(conn):
        conn.send((did, '__getitem__', ('fixed',), {}))
        r = conn.recv()
        if r != ('#RETURN', 'worker-%d' % worker):
            raise Wrong('after a bad request the connection answered %r' % (r,))

    def send(conn, request):
        if isinstance(request, bytes):
            conn.send_bytes(request)
        else:
            conn.send(request)

    def serving_bad(request):
        conn = serving()
        try:
            send(conn, request)
            kind = rejection(conn.recv())
            still_serves(conn)
            return kind
        finally:
            conn.close()

    def control_bad(request):
        conn = Client(address, authkey=key)
        try:
            send(conn, request)
            kind = rejection(conn.recv())
            if conn.poll(10):
                try:
                    extra = conn.recv()
                except EOFError:
                    return kind
                raise Wrong('the server sent %r instead of closing' % (extra,))
            raise Wrong('the server kept a control connection open for 10 s')
        finally:
            conn.close()

    def garbage():
        return b'\xff' + os.urandom(7 + int.from_bytes(os.urandom(1), 'big'))

    def dict_set_get(i):
        k = 'k%d' % (i % 64)
        v = i * 7 if i % 3 == 0 else 'w%d:%d:%s' % (worker, i, 'x' * (i % 17))
        d[k] = v
        got = d[k]
        if got != v:
            raise Wrong('d[%r] = %r read back %r' % (k, v, got))

    def queue_put_get(i):
        item = 'q%d:%d' % (worker, i)
        q.put(item)
        got = q.get(timeout=10)
        if got != item:
            raise Wrong('put %r, got %r' % (item, got))

    def list_append_len(i):
        lst.append(i)
        state['len'] += 1
        n = len(lst)
        if n != state['len']:
            raise Wrong('list length %r after %d appends' % (n, state['len']))

    def create_use_decref(i):
        x = m.dict({'i': i})
        try:
            got = x['i']
            if got != i:
                raise Wrong("dict({'i': %d})['i'] read back %r" % (i, got))
            x['j'] = i + 1
            if len(x) != 2:
                raise Wrong('len %r, expected 2' % len(x))
        finally:
            x._close()  # the proxy's finalizer: its decref, once

    def hang_up(i):
        conn = serving()
        conn.send((hq._token.id, 'get', (), {}))
        time.sleep(0.005)
        conn.close()
        time.sleep(0.02)
        item = 'h%d:%d' % (worker, i)
        hq.put(item)
        try:
            got = hq.get(timeout=5)
        except Exception as e:
            raise Wrong('after a hang-up, put %r then get failed: %r' % (item, e))
        if got != item:
            raise Wrong('after a hang-up, put %r, got %r' % (item, got))
        return 'closed by us'

    def never_handshake(i):
        s = socket.create_connection(address)
        time.sleep(0.05)
        s.close()
        return 'closed by us'

    def wrong_authkey(i):
        try:
            c = Client(address, authkey=os.urandom(32))
        except AuthenticationError:
            return 'AuthenticationError'
        c.close()
        raise Wrong('a wrong authkey was accepted')

    def oversize(i):
        conn = serving()
        s = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            s.sendall(b'\x7f\xff\xff\xff' + os.urandom(60))
            s.settimeout(10)
            try:
                data = s.recv(1)
            except ConnectionResetError:
                return 'closed (ECONNRESET)'
            except socket.timeout:
                raise Wrong('the server kept the connection open for 10 s')
            if data:
                raise Wrong('the server sent %r instead of closing' % (data,))
            return 'closed'
        finally:
            s.close()
            conn.close()

    run = {
        'dict set+get': dict_set_get,
        'queue put+get': queue_put_get,
        'list append+len': list_append_len,
        'create+use+decref': create_use_decref,
        'control: garbage bytes': lambda i: control_bad(garbage()),
        'control: pickled non-tuple': lambda i: control_bad('hello'),
        'control: 3-tuple': lambda i: control_bad((None, 'dummy', ())),
        'control: unknown public method': lambda i: control_bad((None, 'foo', (), {})),
        'serving: garbage bytes': lambda i: serving_bad(garbage()),
        'serving: pickled non-tuple': lambda i: serving_bad(('hello', 'world')),
        'serving: unknown ident': lambda i: serving_bad(('no-such-id-%d' % worker, '__len__', (), {})),
        'serving: non-str method name': lambda i: serving_bad((did, 42, (), {})),
        'serving: method not exposed': lambda i: serving_bad((did, '__init__', (), {})),
        'serving: args not a tuple': lambda i: serving_bad((did, '__getitem__', 5, {})),
        'serving: kwds not a dict': lambda i: serving_bad((did, '__getitem__', ('fixed',), [1, 2])),
        'hang up during a blocking get': hang_up,
        'connect, never handshake': never_handshake,
        'wrong authkey': wrong_authkey,
        'oversize length prefix': oversize,
    }

    for i in range(count):
        kind = schedule[(i * 7 + worker * 13) % len(schedule)]
        bump(report['sent'], kind)
        t = time.monotonic()
        try:
            reply = run[kind](i)
            bump(report['ok'], kind)
            if isinstance(reply, str):
                bump(report['replies'], reply)
        except Exception as e:
            if isinstance(e, Wrong):
                bump(report['wrong'], kind)
            else:
                bump(report['errors'], '%s: %s' % (kind, type(e).__name__))
            if len(report['samples']) < 10:
                report['samples'].append('python worker %d request %d (%s): %s: %s' % (worker, i, kind, type(e).__name__, str(e)[:300]))
        report['ms'][kind] = report['ms'].get(kind, 0) + (time.monotonic() - t) * 1000

    for p in (d, q, hq, lst):
        p._close()
    report['seconds'] = time.monotonic() - t0
    sys.stdout.write(json.dumps(report))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
