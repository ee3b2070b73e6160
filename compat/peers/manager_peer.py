"""A Python peer for the manager tests: billiard's or the standard library's
`managers` module (`billiard.managers` / `multiprocessing.managers`) on the
other end of a billiard-ts manager connection.

    python manager_peer.py --impl billiard|mp --role server|client
                           --address JSON --authkey HEX
                           [--scenario NAME] [--n N] [--name NAME]
                           [--pickle HEX] [--sentinels K]

--address is JSON: a list ["127.0.0.1", port] is a TCP address (port 0
binds an ephemeral port), a string is an AF_UNIX path. --authkey is the
manager's key in hex.

server: a `PeerManager(SyncManager)` of the chosen implementation, which
also registers `get_queue`, `get_jobs`, `get_results` (queue.Queue objects)
and `get_dict` (a dict, DictProxy) returning module-level objects, so every
client shares them. Prints one JSON line
    {"address": <bound address: list for TCP, string for AF_UNIX>,
     "python": "3.11.2", "impl": "billiard", "pid": N}
then runs `get_server().serve_forever()`. It exits 0 when a client sends
`shutdown` (within about a second: the server polls its stop event) and on
SIGTERM.

client: prints {"python": ..., "impl": ..., "pid": ...} as its first line,
runs --scenario, then prints one final line
    {"ok": bool, "passed": [check names],
     "failures": [{"name": ..., "error": traceback text}], ...extra}
and exits 0 if ok else 1. Every check asserts values; a failing check is
recorded and the scenario goes on with the next one.

Scenarios (client):
    queue     BaseManager + register('get_queue'): get the ints 0..n-1 that
              the other side put first (--n), then qsize/empty/put/get/
              get_nowait/get-timeout checks; finally leaves 'py-done' on
              the queue for the other side.
    sync      a plain SyncManager, every typeid: dict, list, Event, Lock,
              RLock, Semaphore, BoundedSemaphore, Condition, Barrier,
              Namespace, Value, Array, Queue, JoinableQueue, refcounting
              (number_of_objects); Pool only with --name pool.
              Extra: "rlock_unowned_error" (type name of the exception an
              unowned RLock release raises).
    consumer  BaseManager + get_jobs/get_results: job = jobs.get() until
              None; puts (job, --name, job * job) on results.
              Extra: "count" (jobs processed).
    producer  puts the ints 0..n-1 on jobs, then --sentinels Nones.
              Extra: "count" (n).
    rebuild   --pickle HEX is a pickled proxy of a dict on the manager at
              --address; sets current_process().authkey (of both billiard,
              when it is the impl, and multiprocessing, since the pickle
              names the sender's module) to --authkey, unpickles, sets
              proxy['from_python'] = 'yes' and reads proxy.get('from_node').
              Extra: "type" (class name of the proxy), "proxy_module",
              "from_node" (the value, or its repr when not JSON-encodable).
    counter   BaseManager + register('Counter') and register('get_counter'):
              a Node class served by a billiard-ts manager (AutoProxy from
              the exposed list): inc/value on a new Counter; then on the
              shared one, wait_for(--n) blocks until another client's incs
              reach it. Extra: "exposed" (the new Counter's exposed list).
    shutdown  connect() with a BaseManager, then dispatch(conn, None,
              'shutdown') on a fresh Client connection; checks the reply is
              None and that the listener goes away.

Nothing here imports billiard at module level: python3.12/3.13 have only the
standard library.
"""
import argparse
import array
import gc
import json
import os
import pickle
import queue
import signal
import socket
import sys
import time
import traceback

# Seconds to wait for what must happen.
TIMEOUT = 10


def impl_modules(impl):
    """(managers, connection, process) modules of the implementation."""
    if impl == 'billiard':
        from billiard import managers, connection, process
    else:
        from multiprocessing import managers, connection, process
    return managers, connection, process


def parse_address(text):
    address = json.loads(text)
    if isinstance(address, list):
        address = tuple(address)
    return address


def address_json(address):
    if isinstance(address, bytes):
        return address.decode('latin-1')
    if isinstance(address, tuple):
        return list(address)
    return address


def ident(impl):
    return {'python': sys.version.split()[0], 'impl': impl, 'pid': os.getpid()}


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------

# Module-level shared objects: every client gets the same ones.
SHARED_QUEUE = queue.Queue()
SHARED_JOBS = queue.Queue()
SHARED_RESULTS = queue.Queue()
SHARED_DICT = {}


def get_queue():
    return SHARED_QUEUE


def get_jobs():
    return SHARED_JOBS


def get_results():
    return SHARED_RESULTS


def get_dict():
    return SHARED_DICT


def run_server(args, authkey, address):
    managers, _, _ = impl_modules(args.impl)

    class PeerManager(managers.SyncManager):
        pass

    PeerManager.register('get_queue', callable=get_queue)
    PeerManager.register('get_jobs', callable=get_jobs)
    PeerManager.register('get_results', callable=get_results)
    PeerManager.register('get_dict', callable=get_dict, proxytype=managers.DictProxy)

    m = PeerManager(address=address, authkey=authkey)
    server = m.get_server()

    # serve_forever() catches SystemExit in its wait loop and then exits 0
    # itself (B and S alike), so raising it from the handler is enough.
    def on_term(signum, frame):
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)

    info = {'address': address_json(server.address)}
    info.update(ident(args.impl))
    print(json.dumps(info), flush=True)
    server.serve_forever()


# ---------------------------------------------------------------------------
# Client: checks
# ---------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.passed = []
        self.failures = []
        self.extra = {}

    def check(self, name, fn):
        """Runs fn(); records a pass, or the traceback of what it raised.
        Returns fn's result (None on failure)."""
        try:
            result = fn()
        except BaseException as exc:  # noqa: B902 (record everything, go on)
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.failures.append({'name': name, 'error': traceback.format_exc()})
            return None
        self.passed.append(name)
        return result

    def report(self):
        out = {'ok': not self.failures, 'passed': self.passed, 'failures': self.failures}
        out.update(self.extra)
        print(json.dumps(out), flush=True)
        return 0 if not self.failures else 1


def eq(got, expected):
    assert got == expected, 'got %r, expected %r' % (got, expected)
    return got


def raises(exc_types, fn, *args):
    """Calls fn(*args), asserts it raises one of exc_types; returns the exception."""
    try:
        value = fn(*args)
    except exc_types as exc:
        return exc
    raise AssertionError('expected %r, got a return value %r' % (exc_types, value))


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------

def scenario_queue(c, args, managers, authkey, address):
    class QueueManager(managers.BaseManager):
        pass
    QueueManager.register('get_queue')
    m = QueueManager(address=address, authkey=authkey)
    c.check('connect', m.connect)
    q = c.check('get_queue', m.get_queue)

    def initial():
        got = [q.get(True, TIMEOUT) for _ in range(args.n)]
        eq(got, list(range(args.n)))
    c.check('get_initial_items', initial)
    c.check('qsize_0', lambda: eq(q.qsize(), 0))
    c.check('empty_true', lambda: eq(q.empty(), True))

    def put_two():
        eq(q.put('py-1'), None)
        eq(q.put(('tuple', 2)), None)
        eq(q.qsize(), 2)
        eq(q.empty(), False)
    c.check('put_qsize_2', put_two)
    c.check('get_py1', lambda: eq(q.get(), 'py-1'))
    c.check('get_tuple', lambda: eq(q.get(), ('tuple', 2)))
    c.check('get_nowait_empty', lambda: raises(queue.Empty, q.get_nowait))

    def get_timeout():
        t0 = time.monotonic()
        raises(queue.Empty, q.get, True, 0.2)
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.15, 'get(True, 0.2) returned after %.3f s' % elapsed
    c.check('get_timeout_empty', get_timeout)
    c.check('put_done', lambda: eq(q.put('py-done'), None))


def scenario_sync(c, args, managers, authkey, address):
    m = managers.SyncManager(address=address, authkey=authkey)
    c.check('connect', m.connect)
    billiard = args.impl == 'billiard'

    # -- dict --------------------------------------------------------------
    d = c.check('dict.create', lambda: m.dict({'a': 1}))

    def dict_basic():
        d['b'] = 2
        eq(d['a'], 1)
        eq(d['b'], 2)
        eq(len(d), 2)
        eq('a' in d, True)
        eq('zz' in d, False)
        eq(d.get('zz', 'dflt'), 'dflt')
        eq(d.get('a'), 1)
    c.check('dict.setitem_getitem_len_in_get', dict_basic)

    def dict_views():
        # The server's keys()/values()/items() results come back as lists
        # (the dict views are reduced to lists by the managers' pickler).
        eq(list(d.keys()), ['a', 'b'])
        eq(list(d.values()), [1, 2])
        eq(list(d.items()), [('a', 1), ('b', 2)])
    c.check('dict.keys_values_items', dict_views)

    def dict_mutate():
        eq(d.update({'c': 3, 'd': 4}), None)
        eq(d.pop('c'), 3)
        eq(d.pop('nope', 'x'), 'x')
        eq(d.popitem(), ('d', 4))  # LIFO
        eq(d.setdefault('e', 5), 5)
        eq(d.setdefault('e', 6), 5)
        cp = d.copy()
        assert type(cp) is dict, type(cp)
        eq(cp, {'a': 1, 'b': 2, 'e': 5})
        del d['e']
        eq('e' in d, False)
    c.check('dict.update_pop_popitem_setdefault_copy_del', dict_mutate)
    c.check('dict.missing_keyerror', lambda: raises(KeyError, d.__getitem__, 'missing'))
    c.check('dict.getvalue', lambda: eq(d._getvalue(), {'a': 1, 'b': 2}))
    c.check('dict.str', lambda: eq(str(d), repr({'a': 1, 'b': 2})))

    def dict_iter():
        if billiard:
            # billiard's DictProxy exposes no __iter__ (list(d) would fall back
            # to __getitem__(0) and die with KeyError: 0).
            eq(list(d.keys()), ['a', 'b'])
        else:
            # __iter__ goes through method_to_typeid to an Iterator proxy.
            eq(list(d), ['a', 'b'])
    c.check('dict.iterate', dict_iter)

    def dict_clear():
        eq(d.clear(), None)
        eq(len(d), 0)
    c.check('dict.clear', dict_clear)
    del d

    # -- list --------------------------------------------------------------
    lst = c.check('list.create', lambda: m.list([3, 1, 2]))

    def list_grow():
        eq(lst.append(4), None)
        eq(lst.extend([5, 6]), None)
        eq(lst._getvalue(), [3, 1, 2, 4, 5, 6])
    c.check('list.append_extend', list_grow)

    def list_inplace():
        alias = lst
        alias += [9]
        assert alias is lst, 'l += x must return the proxy itself'
        eq(lst._getvalue(), [3, 1, 2, 4, 5, 6, 9])
        alias *= 2
        assert alias is lst, 'l *= n must return the proxy itself'
        eq(lst._getvalue(), [3, 1, 2, 4, 5, 6, 9] * 2)
    c.check('list.iadd_imul', list_inplace)

    def list_reset():
        # shrink back to a known state with delitem of a slice
        del lst[3:]
        eq(lst._getvalue(), [3, 1, 2])
    c.check('list.delitem_slice', list_reset)

    def list_index_ops():
        eq(lst[0], 3)
        eq(lst[-1], 2)
        eq(lst[0:2], [3, 1])
        lst[1] = 10
        eq(lst[1], 10)
        del lst[1]
        eq(lst._getvalue(), [3, 2])
        eq(lst.index(2), 1)
        eq(lst.count(3), 1)
        eq(lst.count(99), 0)
        eq(lst.insert(0, 7), None)
        eq(lst._getvalue(), [7, 3, 2])
        eq(lst.pop(), 2)
        eq(lst.pop(0), 7)
        lst.extend([4, 3, 1])
        eq(lst.remove(3), None)  # the first 3
        eq(lst._getvalue(), [4, 3, 1])
        eq(lst.reverse(), None)
        eq(lst._getvalue(), [1, 3, 4])
        lst.append(2)
        eq(lst.sort(), None)
        eq(lst._getvalue(), [1, 2, 3, 4])
        lst.sort(reverse=True)
        eq(lst._getvalue(), [4, 3, 2, 1])
        eq(len(lst), 4)
        eq(3 in lst, True)
        eq(99 in lst, False)
    c.check('list.getitem_slice_setitem_delitem_index_count_insert_pop_remove_reverse_sort_len_in', list_index_ops)

    def list_iter():
        # ListProxy has no __iter__: the __getitem__(0), (1), ... fallback.
        eq([x for x in lst], [4, 3, 2, 1])
    c.check('list.iterate', list_iter)

    def list_ops():
        r = lst + [1]
        assert type(r) is list, type(r)
        eq(r, [4, 3, 2, 1, 1])
        r = lst * 2
        assert type(r) is list, type(r)
        eq(r, [4, 3, 2, 1] * 2)
    c.check('list.add_mul', list_ops)
    c.check('list.indexerror', lambda: raises(IndexError, lst.__getitem__, 99))
    c.check('list.index_valueerror', lambda: raises(ValueError, lst.index, 12345))
    del lst

    # -- Event -------------------------------------------------------------
    def event():
        e = m.Event()
        eq(e.is_set(), False)
        eq(e.wait(0.1), False)
        eq(e.set(), None)
        eq(e.is_set(), True)
        eq(e.wait(), True)
        eq(e.clear(), None)
        eq(e.is_set(), False)
    c.check('Event', event)

    # -- Lock --------------------------------------------------------------
    def lock():
        lk = m.Lock()
        eq(lk.acquire(), True)
        # the server's threading.Lock is not reentrant, even for this thread
        eq(lk.acquire(False), False)
        eq(lk.acquire(True, 0.1), False)
        eq(lk.release(), None)
        with lk:
            eq(lk.acquire(False), False)
        eq(lk.acquire(False), True)
        lk.release()
    c.check('Lock', lock)

    # -- RLock -------------------------------------------------------------
    def rlock():
        rl = m.RLock()
        eq(rl.acquire(), True)
        eq(rl.acquire(), True)
        eq(rl.release(), None)
        eq(rl.release(), None)
        exc = raises(Exception, rl.release)
        c.extra['rlock_unowned_error'] = type(exc).__name__
    c.check('RLock', rlock)

    # -- Semaphores --------------------------------------------------------
    def semaphore():
        s = m.Semaphore(2)
        eq(s.acquire(), True)
        eq(s.acquire(), True)
        eq(s.acquire(False), False)
        eq(s.release(), None)
        eq(s.release(), None)
        eq(s.acquire(False), True)
        s.release()
    c.check('Semaphore', semaphore)

    def bounded():
        b = m.BoundedSemaphore(1)
        eq(b.acquire(), True)
        eq(b.acquire(False), False)
        eq(b.release(), None)
        raises(ValueError, b.release)
    c.check('BoundedSemaphore', bounded)

    # -- Condition ---------------------------------------------------------
    def condition():
        cond = m.Condition()
        eq(cond.acquire(), True)
        t0 = time.monotonic()
        eq(cond.wait(0.1), False)
        assert time.monotonic() - t0 >= 0.08
        # billiard's ConditionProxy.notify() takes no argument (sends ());
        # multiprocessing's sends (n,).
        eq(cond.notify(), None)
        if not billiard:
            eq(cond.notify(1), None)
        eq(cond.notify_all(), None)
        eq(cond.release(), None)
        # released: a non-owner notify must now fail on the server
        raises(RuntimeError, cond.notify_all)
    c.check('Condition', condition)

    # -- Barrier -----------------------------------------------------------
    def barrier():
        b = m.Barrier(1)
        eq(b.wait(), 0)
        eq(b.parties, 1)
        eq(b.n_waiting, 0)
        eq(b.broken, False)
        eq(b.abort(), None)
        eq(b.broken, True)
        eq(b.reset(), None)
        eq(b.broken, False)
    c.check('Barrier', barrier)

    # -- Namespace ---------------------------------------------------------
    def namespace():
        ns = m.Namespace(x=1)
        eq(ns.x, 1)
        ns.y = 2
        eq(ns.y, 2)
        del ns.y
        raises(AttributeError, getattr, ns, 'y')
        v = ns._getvalue()
        eq(v.x, 1)
        eq(hasattr(v, 'y'), False)
    c.check('Namespace', namespace)

    # -- Value -------------------------------------------------------------
    def value():
        v = m.Value('i', 5)
        eq(v.get(), 5)
        eq(v.set(7), None)
        eq(v.value, 7)
        v.value = 8
        eq(v.get(), 8)
    c.check('Value', value)

    # -- Array -------------------------------------------------------------
    def arr():
        a = m.Array('i', [1, 2, 3])
        eq(len(a), 3)
        eq(a[1], 2)
        a[1] = 5
        eq(a[1], 5)
        got = a._getvalue()
        assert type(got) is array.array, type(got)
        eq(got, array.array('i', [1, 5, 3]))
    c.check('Array', arr)

    # -- Queue, JoinableQueue ----------------------------------------------
    def mqueue():
        q = m.Queue(2)
        eq(q.empty(), True)
        eq(q.full(), False)
        eq(q.put('a'), None)
        eq(q.put_nowait(('b', 2)), None)
        eq(q.qsize(), 2)
        eq(q.full(), True)
        raises(queue.Full, q.put_nowait, 'c')
        eq(q.get(), 'a')
        eq(q.get(True, TIMEOUT), ('b', 2))
        eq(q.empty(), True)
        raises(queue.Empty, q.get_nowait)
    c.check('Queue', mqueue)

    def jqueue():
        jq = m.JoinableQueue()
        eq(jq.put(42), None)
        eq(jq.get(), 42)
        eq(jq.task_done(), None)
        eq(jq.join(), None)
        raises(ValueError, jq.task_done)  # called more times than items
    c.check('JoinableQueue', jqueue)

    # -- Pool (only on request: needs a server that runs Python callables) --
    if args.name == 'pool':
        def pool():
            p = m.Pool(1)
            try:
                eq(p.apply(pow, (2, 10)), 1024)
                eq(p.map(abs, [-1, -2]), [1, 2])
            finally:
                p.terminate()
        c.check('Pool', pool)

    # -- reference counting ------------------------------------------------
    def refcount():
        gc.collect()
        n0 = m._number_of_objects()
        assert isinstance(n0, int), type(n0)
        x = m.list([1])
        eq(m._number_of_objects(), n0 + 1)
        del x
        gc.collect()
        eq(m._number_of_objects(), n0)
    c.check('refcount', refcount)


def register_jobs(managers):
    class M(managers.BaseManager):
        pass
    M.register('get_jobs')
    M.register('get_results')
    return M


def scenario_consumer(c, args, managers, authkey, address):
    m = register_jobs(managers)(address=address, authkey=authkey)
    c.check('connect', m.connect)
    jobs = c.check('get_jobs', m.get_jobs)
    results = c.check('get_results', m.get_results)
    count = 0

    def consume():
        nonlocal count
        while True:
            job = jobs.get()
            if job is None:
                break
            assert isinstance(job, int), 'job %r' % (job,)
            results.put((job, args.name, job * job))
            count += 1
    c.check('consume', consume)
    c.extra['count'] = count


def scenario_producer(c, args, managers, authkey, address):
    m = register_jobs(managers)(address=address, authkey=authkey)
    c.check('connect', m.connect)
    jobs = c.check('get_jobs', m.get_jobs)

    def produce():
        for i in range(args.n):
            eq(jobs.put(i), None)
        for _ in range(args.sentinels):
            eq(jobs.put(None), None)
    c.check('produce', produce)
    c.extra['count'] = args.n


def scenario_rebuild(c, args, managers, authkey, address):
    _, _, process = impl_modules(args.impl)
    # A proxy unpickled here authenticates with current_process().authkey.
    # The pickle names the sender's managers module, whose current_process()
    # may be the other package's: set the key on both.
    process.current_process().authkey = authkey
    import multiprocessing
    multiprocessing.current_process().authkey = authkey
    state = {}

    def load():
        state['proxy'] = proxy = pickle.loads(bytes.fromhex(args.pickle))
        c.extra['type'] = type(proxy).__name__
        c.extra['proxy_module'] = type(proxy).__module__
        assert hasattr(proxy, '_callmethod') and hasattr(proxy, '_token'), \
            'not a proxy: %r' % (proxy,)
        eq(proxy._token.address, address)
    c.check('unpickle', load)

    def set_item():
        proxy = state['proxy']
        proxy['from_python'] = 'yes'
        eq(proxy['from_python'], 'yes')
        eq('from_python' in proxy, True)
    c.check('setitem', set_item)

    def get_item():
        got = state['proxy'].get('from_node')
        try:
            json.dumps(got)
            c.extra['from_node'] = got
        except (TypeError, ValueError):
            c.extra['from_node'] = repr(got)
    c.check('get_from_node', get_item)

    def release():
        del state['proxy']
        gc.collect()
    c.check('del', release)


def scenario_counter(c, args, managers, authkey, address):
    class M(managers.BaseManager):
        pass
    M.register('Counter')
    M.register('get_counter')
    m = M(address=address, authkey=authkey)
    c.check('connect', m.connect)
    cnt = c.check('create', m.Counter)

    def use():
        c.extra['exposed'] = sorted(cnt._exposed_)
        eq(cnt.inc(), 1)
        eq(cnt.inc(5), 6)
        eq(cnt.value(), 6)
        raises(AttributeError, getattr, cnt, '_hidden')
    c.check('inc_value', use)
    shared = c.check('get_counter', m.get_counter)
    c.check('wait_for', lambda: eq(shared.wait_for(args.n, TIMEOUT), True))


def scenario_shutdown(c, args, managers, authkey, address):
    _, connection, _ = impl_modules(args.impl)
    m = managers.BaseManager(address=address, authkey=authkey)
    c.check('connect', m.connect)

    def shutdown():
        conn = connection.Client(address, authkey=authkey)
        try:
            eq(managers.dispatch(conn, None, 'shutdown'), None)
        finally:
            conn.close()
    c.check('shutdown', shutdown)
    if 'shutdown' not in c.passed:
        return

    def gone():
        # the listener must stop accepting: a Python server exits within
        # about a second (it polls its stop event once per second)
        family = socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX
        deadline = time.monotonic() + TIMEOUT
        while True:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(1)
            try:
                s.connect(address)
            except OSError:
                return
            finally:
                s.close()
            if time.monotonic() > deadline:
                raise AssertionError('the server still accepts connections after %s s' % TIMEOUT)
            time.sleep(0.1)
    c.check('server_gone', gone)


SCENARIOS = {
    'queue': scenario_queue,
    'sync': scenario_sync,
    'consumer': scenario_consumer,
    'producer': scenario_producer,
    'rebuild': scenario_rebuild,
    'shutdown': scenario_shutdown,
    'counter': scenario_counter,
}


def run_client(args, authkey, address):
    print(json.dumps(ident(args.impl)), flush=True)
    c = Checks()
    try:
        managers, _, _ = impl_modules(args.impl)
        SCENARIOS[args.scenario](c, args, managers, authkey, address)
    except BaseException:  # noqa: B902 (report it as a failure)
        c.failures.append({'name': 'scenario', 'error': traceback.format_exc()})
    return c.report()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--impl', choices=['billiard', 'mp'], required=True)
    ap.add_argument('--role', choices=['server', 'client'], required=True)
    ap.add_argument('--address', required=True)
    ap.add_argument('--authkey', required=True)
    ap.add_argument('--scenario', choices=sorted(SCENARIOS))
    ap.add_argument('--n', type=int, default=0)
    ap.add_argument('--name', default='')
    ap.add_argument('--pickle')
    ap.add_argument('--sentinels', type=int, default=0)
    args = ap.parse_args()
    authkey = bytes.fromhex(args.authkey)
    address = parse_address(args.address)
    if args.role == 'server':
        run_server(args, authkey, address)
    else:
        if not args.scenario:
            ap.error('--role client needs --scenario')
        if args.scenario == 'rebuild' and not args.pickle:
            ap.error('--scenario rebuild needs --pickle')
        sys.exit(run_client(args, authkey, address))


if __name__ == '__main__':
    main()
