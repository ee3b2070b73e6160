"""Python peer of the sync-layer interop tests: queues, locks, events,
conditions, semaphores, barriers and shared values shared between Node and
Python processes.

Two roles, each a small protocol that the Node side implements too
(test/peers/sync-child.ts has the same child functions in camelCase, and
test/sync-python.test.ts the same parent scenarios):

* child functions (`echo`, `lock_steps`, ...): the target of a Python child
  whose parent is Node. They use only the objects' methods, so they run
  with billiard's classes (a billiard child started by billiard-ts) and with
  the standard library's (python3.12/3.13 rebuilding billiard-ts's spawn
  pickle under multiprocessing's names, see `child_main`);
* parent scenarios (`scenario_*`): a Python parent (billiard or
  multiprocessing, spawn context) hands its own objects to Node children
  and checks what both sides see, with plain asserts. pytests/
  test_sync_node_child.py runs them under /usr/bin/python3 through
  compat/billiard_ts.py's NodeProcess; `python3.1x sync_peer.py parent`
  runs them with multiprocessing alone through `MpNodeProcess` (no billiard).

Nothing here imports billiard at module level: python3.12/3.13 have only the
standard library.
"""
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import traceback
import urllib.parse
import urllib.request
from queue import Empty

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))  # compat/, for billiard_ts (no billiard import at its top)

# Seconds to wait for what must happen; seconds of a wait that must time out.
TIMEOUT = 30
SHORT = 0.1
# The Node children's module (the same protocols, camelCase names).
NODE_TARGETS = os.path.join(REPO, 'test', 'peers', 'sync-child.ts')

# Values that travel both ways through a queue and come back equal, in
# Python and in JavaScript (None is the end of an echo).
ECHO_VALUES = [
    'hello', '', 'ü€\U0001d11e', b'bytes\x00\xff', 2 ** 70, -(2 ** 63), 12345, -1.5, 1e-300, True, False,
    (1, 'two', (3.5, None)), [1, [2, [3, [4]]]], {'a': 1, 'b': [b'x', 'y']},
    'x' * 200000,  # more than a pipe's buffer: written in several pieces
]


# ---------------------------------------------------------------------------
# Child functions (a Python child of a Node parent).
# ---------------------------------------------------------------------------

def echo(inq, outq):
    """Puts on `outq` every item got from `inq`, up to and including None."""
    while True:
        item = inq.get(timeout=TIMEOUT)
        outq.put(item)
        if item is None:
            break


def simple_echo(inq, outq):
    """echo() for SimpleQueues (whose get() takes no timeout)."""
    while True:
        item = inq.get()
        outq.put(item)
        if item is None:
            break


def lock_steps(lock, rlock, cmd, out):
    """Holds `lock` and `rlock` (twice) while the parent tries them, then
    tries `lock` while the parent holds it."""
    lock.acquire()
    rlock.acquire()
    rlock.acquire()
    out.put('held')
    assert cmd.get(timeout=TIMEOUT) == 'release'
    lock.release()
    rlock.release()
    out.put('released once')  # rlock: still held once
    assert cmd.get(timeout=TIMEOUT) == 'release rlock'
    rlock.release()
    out.put(('timed', lock.acquire(True, SHORT)))  # the parent holds it now
    assert cmd.get(timeout=TIMEOUT) == 'parent released'
    out.put(('acquired', lock.acquire(True, TIMEOUT)))
    lock.release()
    out.put('done')


def sleep_on_lock(lock, out):
    """Says it is about to wait, then sleeps in sem_timedwait on `lock`
    (which the parent holds) until the parent's release wakes it."""
    out.put('waiting')
    out.put(('acquired', lock.acquire(True, 10)))
    lock.release()


def event_steps(to_child, to_parent, out):
    """Reports `to_child` unset, waits for the parent to set it, sets `to_parent`."""
    out.put(('is_set', to_child.is_set()))
    out.put(('waited', to_child.wait(TIMEOUT)))
    to_parent.set()


def shared_steps(vi, vd, vl, ai, ad, ac, cmd, out):
    """Reports the shared values as the parent wrote them after the start,
    then writes its own."""
    out.put('ready')
    assert cmd.get(timeout=TIMEOUT) == 'read'
    out.put(('seen', vi.value, vd.value, vl.value, list(ai), list(ad), ac.value))
    vi.value = -123456
    vd.value = 0.1
    vl.value = -(2 ** 62) - 5
    ai[:] = [10, 20, 30]
    ad[1] = 1e300
    ac.value = b'from python'
    out.put('written')


def increment(lock, counter, counter2, n, go):
    """Adds 1 to `counter` n times under `lock`, and to `counter2` under its
    own lock; each `+= 1` is a read then a write (lost without the lock)."""
    assert go.wait(TIMEOUT)
    for _ in range(n):
        with lock:
            counter.value += 1
        with counter2.get_lock():
            counter2.value += 1


def put_many(q, n):
    for i in range(n):
        q.put(i)


def get_many(q, n, out):
    """Gets n items; reports the count and the first one out of order (or None)."""
    bad = None
    for i in range(n):
        item = q.get(timeout=TIMEOUT)
        if item != i and bad is None:
            bad = (i, item)
    out.put(('got', n, bad))


def consume_joinable(jq, n, go, done):
    """Gets n items, then (once `go` is set: the parent is in join()) marks
    each done, counting in `done` before each task_done()."""
    items = [jq.get(timeout=TIMEOUT) for _ in range(n)]
    assert go.wait(TIMEOUT)
    for _ in items:
        with done.get_lock():
            done.value += 1
        jq.task_done()


def produce_joinable(jq, n, out):
    """Puts n items, waits in join() until the parent marked them all done."""
    for i in range(n):
        jq.put(i)
    jq.join()
    out.put('joined')


def semaphore_steps(sem, bsem, cmd, out):
    """Takes the parent's Semaphore(2) dry; tries the BoundedSemaphore the
    parent holds; over-releases it once the parent released it."""
    took = [sem.acquire(False) for _ in range(3)]
    out.put(('took', took, sem.get_value()))
    assert cmd.get(timeout=TIMEOUT) == 'release'
    for _ in range(3):
        sem.release()  # one more than the initial value: a Semaphore allows it
    out.put(('bounded', bsem.acquire(True, SHORT)))
    assert cmd.get(timeout=TIMEOUT) == 'bsem released'
    try:
        bsem.release()
        out.put(('over-release', None, None))
    except ValueError as e:
        out.put(('over-release', type(e).__name__, str(e)))


def condition_steps(cond, cmd, out):
    """Waits on `cond` for the parent's notify; then notifies the parent."""
    with cond:
        out.put('waiting')
        out.put(('woken', cond.wait(TIMEOUT)))
    assert cmd.get(timeout=TIMEOUT) == 'notify me'
    with cond:  # taken once the parent waits (wait() released it)
        cond.notify()
    out.put('notified')


def barrier_wait(barrier, out):
    out.put(('index', barrier.wait(TIMEOUT)))


def describe(q, *objs):
    """Puts on `q` the module and class of each other argument (what this child rebuilt them as)."""
    q.put(['%s.%s' % (type(o).__module__, type(o).__name__) for o in objs])


# ---------------------------------------------------------------------------
# A Python 3.12/3.13 child without billiard: billiard-ts's spawn pickle
# loaded with billiard's module names read as multiprocessing's.
# ---------------------------------------------------------------------------

class _AsMultiprocessing(pickle.Unpickler):
    """Loads `billiard.<module>` globals from `multiprocessing.<module>`:
    the shapes (state tuples, _DupFd, rebuild_*) are the same."""

    def find_class(self, module, name):
        if module == 'billiard' or module.startswith('billiard.'):
            module = 'multiprocessing' + module[len('billiard'):]
        return super().find_class(module, name)


def child_main():
    """`sync_peer.py child`: stdin holds a pickle of (function name, args)
    made by billiard-ts's spawn registry; the descriptors it names were
    passed under the same numbers."""
    target, args = _AsMultiprocessing(io.BytesIO(sys.stdin.buffer.read())).load()
    globals()[target](*args)


# ---------------------------------------------------------------------------
# Parent scenarios (a Python parent, Node children).
# `start(name, args)` starts a Node child running sync-child.ts#name and
# returns something with join(timeout) and exitcode.
# ---------------------------------------------------------------------------

def _joined(p):
    p.join(TIMEOUT)
    assert p.exitcode == 0, 'Node child exited with %r' % (p.exitcode,)


def _assert_empty(q, timeout=SHORT * 3):
    try:
        item = q.get(timeout=timeout)
    except Empty:
        return
    raise AssertionError('expected nothing yet, got %r' % (item,))


def scenario_queue_echo(ctx, start):
    """Items Python puts come back from the Node child, equal."""
    inq, outq = ctx.Queue(), ctx.Queue()
    p = start('echo', (inq, outq))
    for v in ECHO_VALUES + [None]:
        inq.put(v)
    got = [outq.get(timeout=TIMEOUT) for _ in range(len(ECHO_VALUES) + 1)]
    assert got == ECHO_VALUES + [None], got
    _joined(p)


def scenario_simple_queue_echo(ctx, start):
    inq, outq = ctx.SimpleQueue(), ctx.SimpleQueue()
    p = start('simpleEcho', (inq, outq))
    for v in ECHO_VALUES + [None]:
        inq.put(v)
    got = [outq.get() for _ in range(len(ECHO_VALUES) + 1)]
    assert got == ECHO_VALUES + [None], got
    _joined(p)


def scenario_lock(ctx, start):
    """The Node child holds the Lock (and the RLock twice): Python's timed
    acquire fails; released, Python takes it; then the reverse."""
    lock, rlock, cmd, out = ctx.Lock(), ctx.RLock(), ctx.Queue(), ctx.Queue()
    p = start('lockSteps', (lock, rlock, cmd, out))
    assert out.get(timeout=TIMEOUT) == 'held'
    assert lock.acquire(True, SHORT) is False
    assert lock.acquire(False) is False
    assert rlock.acquire(False) is False
    cmd.put('release')
    assert out.get(timeout=TIMEOUT) == 'released once'
    assert lock.acquire(True, TIMEOUT) is True
    assert rlock.acquire(False) is False  # the child still holds it once
    cmd.put('release rlock')
    assert out.get(timeout=TIMEOUT) == ('timed', False)
    assert rlock.acquire(True, TIMEOUT) is True
    rlock.release()
    lock.release()
    cmd.put('parent released')
    assert out.get(timeout=TIMEOUT) == ('acquired', True)
    assert out.get(timeout=TIMEOUT) == 'done'
    _joined(p)


def scenario_event(ctx, start):
    to_child, to_parent, out = ctx.Event(), ctx.Event(), ctx.Queue()
    p = start('eventSteps', (to_child, to_parent, out))
    assert out.get(timeout=TIMEOUT) == ('is_set', False)
    assert to_parent.wait(SHORT) is False
    to_child.set()
    assert out.get(timeout=TIMEOUT) == ('waited', True)
    assert to_parent.wait(TIMEOUT) is True
    assert to_parent.is_set()
    to_parent.clear()
    assert not to_parent.is_set()
    _joined(p)


def scenario_shared(ctx, start):
    """Writes after the start are seen by the Node child, and its writes here."""
    vi, vd, vl = ctx.Value('i', 42), ctx.Value('d', 1.5), ctx.Value('l', 2 ** 40 + 3)
    ai, ad, ac = ctx.Array('i', [1, -2, 3]), ctx.Array('d', [0.5, -0.25, 3.25]), ctx.Array('c', 16)
    cmd, out = ctx.Queue(), ctx.Queue()
    p = start('sharedSteps', (vi, vd, vl, ai, ad, ac, cmd, out))
    assert out.get(timeout=TIMEOUT) == 'ready'
    vi.value = 7
    ai[0] = 9
    ac.value = b'python bytes'
    cmd.put('read')
    assert out.get(timeout=TIMEOUT) == ('seen', 7, 1.5, 2 ** 40 + 3, [9, -2, 3], [0.5, -0.25, 3.25], b'python bytes')
    assert out.get(timeout=TIMEOUT) == 'written'
    assert (vi.value, vd.value, vl.value) == (-123456, 0.1, -(2 ** 62) - 5)
    assert (list(ai), list(ad), ac.value) == ([10, 20, 30], [0.5, 1e300, 3.25], b'from node')
    _joined(p)


def scenario_counter(ctx, start, n=10000):
    """Two Node children and two Python children (this library's) each add 1
    n times to a counter under one Lock, and to another under its own RLock:
    both end exact."""
    lock, counter, counter2, go = ctx.Lock(), ctx.Value('i', 0), ctx.Value('i', 0), ctx.Event()
    args = (lock, counter, counter2, n, go)
    nodes = [start('increment', args) for _ in range(2)]
    pythons = [ctx.Process(target=increment, args=args) for _ in range(2)]
    for p in pythons:
        p.start()
    go.set()
    for p in nodes + pythons:
        _joined(p)
    assert (counter.value, counter2.value) == (4 * n, 4 * n)


def scenario_bulk_to_python(ctx, start, n=100000):
    """n small items from the Node child arrive here complete and in order."""
    q = ctx.Queue()
    p = start('putMany', (q, n))
    got = [q.get(timeout=TIMEOUT) for _ in range(n)]
    assert got == list(range(n)), next((i, x) for i, x in enumerate(got) if x != i)
    _joined(p)


def scenario_bulk_to_node(ctx, start, n=100000):
    q, out = ctx.Queue(), ctx.Queue()
    p = start('getMany', (q, n, out))
    for i in range(n):
        q.put(i)
    assert out.get(timeout=TIMEOUT) == ('got', n, None)
    _joined(p)


def scenario_joinable_node_consumes(ctx, start, n=50):
    """join() here returns only after the Node consumer called task_done()
    for every item."""
    jq, go, done = ctx.JoinableQueue(), ctx.Event(), ctx.Value('i', 0)
    for i in range(n):
        jq.put(i)
    p = start('consumeJoinable', (jq, n, go, done))
    joiner = threading.Thread(target=jq.join)
    joiner.start()
    joiner.join(SHORT * 3)
    assert joiner.is_alive(), 'join() returned before any task_done()'
    assert done.value == 0
    go.set()
    joiner.join(TIMEOUT)
    assert not joiner.is_alive()
    assert done.value == n
    _joined(p)


def scenario_joinable_python_consumes(ctx, start, n=50):
    """The Node producer's join() returns only after task_done() here for every item."""
    jq, out = ctx.JoinableQueue(), ctx.Queue()
    p = start('produceJoinable', (jq, n, out))
    assert [jq.get(timeout=TIMEOUT) for _ in range(n)] == list(range(n))
    for _ in range(n - 1):
        jq.task_done()
    _assert_empty(out)
    jq.task_done()
    assert out.get(timeout=TIMEOUT) == 'joined'
    _joined(p)


def scenario_semaphores(ctx, start):
    sem, bsem, cmd, out = ctx.Semaphore(2), ctx.BoundedSemaphore(1), ctx.Queue(), ctx.Queue()
    assert bsem.acquire(False)
    p = start('semaphoreSteps', (sem, bsem, cmd, out))
    assert out.get(timeout=TIMEOUT) == ('took', [True, True, False], 0)
    assert sem.get_value() == 0 and sem.acquire(False) is False
    cmd.put('release')
    assert out.get(timeout=TIMEOUT) == ('bounded', False)
    assert sem.get_value() == 3
    bsem.release()
    cmd.put('bsem released')
    assert out.get(timeout=TIMEOUT) == ('over-release', 'ValueError', 'semaphore or lock released too many times')
    _joined(p)


def scenario_condition(ctx, start):
    cond, cmd, out = ctx.Condition(), ctx.Queue(), ctx.Queue()
    p = start('conditionSteps', (cond, cmd, out))
    assert out.get(timeout=TIMEOUT) == 'waiting'
    with cond:  # taken once the child waits
        cond.notify()  # returns once the child woke
    assert out.get(timeout=TIMEOUT) == ('woken', True)
    with cond:
        cmd.put('notify me')
        assert cond.wait(TIMEOUT) is True
    assert out.get(timeout=TIMEOUT) == 'notified'
    _joined(p)


def scenario_barrier(ctx, start):
    barrier, out = ctx.Barrier(2), ctx.Queue()
    p = start('barrierWait', (barrier, out))
    mine = barrier.wait(TIMEOUT)
    kind, theirs = out.get(timeout=TIMEOUT)
    assert kind == 'index' and sorted([mine, theirs]) == [0, 1], (mine, theirs)
    _joined(p)


SCENARIOS = {name[len('scenario_'):]: f for name, f in sorted(globals().items()) if name.startswith('scenario_')}
# Smaller sizes for the second and third run of the same Node code (the
# standard library's classes, python3.12/3.13): the full sizes run with billiard.
LIGHT = {'counter': {'n': 2000}, 'bulk_to_python': {'n': 10000}, 'bulk_to_node': {'n': 10000}}


# ---------------------------------------------------------------------------
# A Node child for a multiprocessing-only Python (no billiard): what
# billiard_ts.NodeProcess does, with multiprocessing's pickler and context.
# ---------------------------------------------------------------------------

class _SpawningPopen:
    def __init__(self):
        self.fds = []

    def duplicate_for_child(self, fd):
        self.fds.append(fd)
        return fd

    def DupFd(self, fd):
        from multiprocessing.popen_spawn_posix import _DupFd
        return _DupFd(fd)


class MpNodeProcess:
    """A billiard-ts child of a parent that has only the standard library."""

    def __init__(self, target, args=()):
        import billiard_ts
        self._target = billiard_ts._target_url(target)
        self._args = tuple(args)
        self._popen = None

    def start(self):
        import billiard_ts
        from multiprocessing import context, current_process
        from multiprocessing.connection import Connection
        from multiprocessing.reduction import ForkingPickler
        cmd = billiard_ts.child_command('node', self._target, REPO, 'source')
        prep = {
            'name': 'NodeChild', 'authkey': current_process().authkey, 'identity': (1,), 'daemon': False,
            'parent_pid': os.getpid(), 'parent_name': current_process().name, 'dir': REPO, 'start_method': 'spawn',
            'modules': [billiard_ts._package_url(cmd[-1])],
        }
        spec = {'target': self._target, 'cls': None, 'args': self._args, 'kwargs': {}, 'state': {}}
        popen = _SpawningPopen()
        context.set_spawning_popen(popen)
        try:
            payload = [bytes(ForkingPickler.dumps(obj, 4)) for obj in (prep, spec)]
        finally:
            context.set_spawning_popen(None)
        ours, theirs = socket.socketpair()
        try:
            self._popen = subprocess.Popen(cmd + ['--billiard-ts-fd', str(theirs.fileno())],
                                           pass_fds=popen.fds + [theirs.fileno()], cwd=REPO)
        finally:
            theirs.close()
        channel = Connection(ours.detach())
        try:
            for b in payload:
                channel.send_bytes(b)
            reply = pickle.loads(channel.recv_bytes())
        finally:
            channel.close()
        assert reply[0] == 'ready', reply

    def join(self, timeout=None):
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    @property
    def exitcode(self):
        return self._popen.poll()


def parent_main(names):
    """`sync_peer.py parent [scenario...]`: runs the scenarios with
    multiprocessing's spawn context and MpNodeProcess children; prints one
    JSON line per scenario, {"scenario", "ok", "error"}; exits 0 if all passed."""
    import multiprocessing
    ctx = multiprocessing.get_context('spawn')

    def start(name, args):
        p = MpNodeProcess(NODE_TARGETS + '#' + name, args)
        p.start()
        return p

    ok = True
    for name in names or sorted(SCENARIOS):
        try:
            SCENARIOS[name](ctx, start, **LIGHT.get(name, {}))
            print(json.dumps({'scenario': name, 'ok': True}), flush=True)
        except BaseException:
            ok = False
            print(json.dumps({'scenario': name, 'ok': False, 'error': traceback.format_exc()}), flush=True)
    return 0 if ok else 1


if __name__ == '__main__':
    if sys.argv[1:2] == ['child']:
        child_main()
    elif sys.argv[1:2] == ['parent']:
        sys.exit(parent_main(sys.argv[2:]))
    else:
        sys.exit('usage: sync_peer.py child | parent [scenario...]')
