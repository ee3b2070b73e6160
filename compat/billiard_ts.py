"""Start billiard-ts (Node) processes from Python.

    from billiard import Pipe
    from billiard_ts import NodeProcess

    parent, child = Pipe()
    p = NodeProcess(target='./tasks.mjs#greet', args=(child, 'python'))
    p.start()
    child.close()
    print(parent.recv())
    p.join()

`target` is '<module>#<export>': a path (relative to the current directory)
or a file: URL of a JavaScript or TypeScript module, and the name of an
exported function. The child is a fresh `node` running billiard-ts's child
entry point; it gets the arguments pickled as billiard pickles them for a
spawned child, so billiard (and multiprocessing) Connections in `args` arrive
connected to the same pipe. Only billiard is needed on the Python side.

Exit codes follow billiard's: 0 when the target returns, 1 when it throws,
n for process.exit(n), -N when killed by signal N.
"""
import collections
import io
import os
import pickle
import socket
import subprocess
import sys
import urllib.parse
import urllib.request

__all__ = ['NodeProcess', 'NodePool', 'node_task', 'register_node_task', 'child_command']

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(HERE)

_counter = [0]


TS_SUFFIXES = ('.ts', '.mts', '.cts', '.tsx')


def _tsx_loader(cwd):
    """tsx's ESM loader: the application's own (under `cwd`) first, else ours."""
    for base in (cwd, PACKAGE):
        loader = os.path.join(base, 'node_modules', 'tsx', 'dist', 'loader.mjs')
        if os.path.exists(loader):
            return urllib.parse.urljoin('file:', urllib.request.pathname2url(loader))
    raise RuntimeError('a TypeScript target needs tsx in the child: install it (npm install --save-dev tsx)')


def child_command(node='node', target=None, cwd=None, entry=None):
    """The command that runs billiard-ts's child entry point.

    `entry` is 'dist' (the built package, what an installed billiard-ts
    has) or 'source' (src/ through tsx, for a checkout whose targets import
    the TypeScript sources: the child must load the same copy of the package
    as its target, or values made by one copy are foreign to the other).
    By default it is $BILLIARD_TS_ENTRY, else 'dist' when dist/ is built.
    A TypeScript target (`module.ts#name`) also needs tsx's loader."""
    cwd = cwd or os.getcwd()
    built = os.path.join(PACKAGE, 'dist', 'process', 'child.js')
    entry = entry or os.environ.get('BILLIARD_TS_ENTRY') or ('dist' if os.path.exists(built) else 'source')
    if entry == 'source':
        source = os.path.join(PACKAGE, 'src', 'process', 'child.ts')
        return [node, '--import', _tsx_loader(cwd), source]
    if entry != 'dist':
        raise ValueError("entry must be 'dist' or 'source', not %r" % (entry,))
    if not os.path.exists(built):
        raise RuntimeError('billiard-ts is not built: run npm run build in %s' % (PACKAGE,))
    module = (target or '').rpartition('#')[0].split('?')[0]
    return [node] + (['--import', _tsx_loader(cwd)] if module.endswith(TS_SUFFIXES) else []) + [built]


def _package_url(script):
    """The file: URL of the package entry beside the child entry `script`
    (src/index.ts or dist/index.js). The child imports it before it loads its
    arguments: that import registers how billiard's locks, queues and shared
    values rebuild (a billiard-ts parent lists those modules itself)."""
    root = os.path.dirname(os.path.dirname(script))
    return urllib.parse.urljoin('file:', urllib.request.pathname2url(os.path.join(root, 'index' + os.path.splitext(script)[1])))


def _target_url(target):
    module, sep, name = target.rpartition('#')
    if not sep or not module or not name:
        raise ValueError("target must be '<module>#<export>', not %r" % (target,))
    if '://' not in module and not module.startswith('file:'):
        module = urllib.parse.urljoin('file:', urllib.request.pathname2url(os.path.abspath(module)))
    return '%s#%s' % (module, name)


class _SpawningPopen:
    """What billiard (and multiprocessing) consult while pickling for a spawned
    child: Connections become `rebuild_connection(_DupFd(fd), ...)` and their
    descriptors are passed to the child under the same numbers."""

    def __init__(self):
        self.fds = []

    def duplicate_for_child(self, fd):
        self.fds.append(fd)
        return fd

    def DupFd(self, fd):
        from billiard.popen_spawn_posix import _DupFd
        return _DupFd(fd)


def _pickler_class():
    """billiard's ForkingPickler that also knows multiprocessing's reducers, so
    that Connections of either library in `args` pickle in spawn form."""
    from billiard.reduction import ForkingPickler as BilliardPickler
    from multiprocessing.reduction import ForkingPickler as MpPickler
    import multiprocessing.connection  # noqa: F401  (registers its Connection reducer)
    import billiard.connection  # noqa: F401

    class Pickler(BilliardPickler):
        # A live view, not a copy: reducers registered later (an Arena's when the heap is
        # first imported, each new ctypes array type's) must be seen by the next child.
        _extra_reducers = collections.ChainMap(BilliardPickler._extra_reducers, MpPickler._extra_reducers)

    return Pickler


class _LazyPickler:
    def __init__(self):
        self._cls = None

    def __call__(self, fp):
        if self._cls is None:
            self._cls = _pickler_class()
        return self._cls(fp, 4)


_Pickler = _LazyPickler()


def _bootstrap_payload(popen, name, identity, daemon, cwd, target, args, kwargs, node, entry):
    """The two pickles a billiard-ts child reads at start (src/process/child.ts):
    the preparation data and the process description, made while `popen` is
    the spawning popen, so that Connections and locks in `args` pickle in
    spawn form (their descriptors go to `popen.duplicate_for_child`)."""
    from billiard import context as billiard_context, current_process, util
    from multiprocessing import context as mp_context
    # The authkey pickles only while the spawning popen is set, as
    # billiard.process.AuthenticationString (spec/connection.md section 5).
    prep = {
        'name': name,
        'authkey': current_process().authkey,
        'identity': identity,
        'daemon': bool(daemon),
        'parent_pid': os.getpid(),
        'parent_name': current_process().name,
        'dir': cwd,
        'start_method': 'spawn',
        # The parent's logging, as billiard's get_preparation_data sends it.
        'log_to_stderr': util._log_to_stderr,
        'modules': [_package_url(child_command(node, target, cwd, entry)[-1])],
    }
    if util._logger is not None:
        prep['log_level'] = util._logger.getEffectiveLevel()
    spec = {'target': target, 'cls': None, 'args': tuple(args), 'kwargs': dict(kwargs), 'state': {}}
    buffers = []
    billiard_context.set_spawning_popen(popen)
    mp_context.set_spawning_popen(popen)
    try:
        for obj in (prep, spec):
            fp = io.BytesIO()
            _Pickler(fp).dump(obj)
            buffers.append(fp.getvalue())
    finally:
        billiard_context.set_spawning_popen(None)
        mp_context.set_spawning_popen(None)
    return buffers


class NodeProcess:
    """A billiard-ts child process running `target` (see the module doc)."""

    def __init__(self, target, args=(), kwargs=None, name=None, daemon=False, node='node', env=None, cwd=None,
                 entry=None):
        from billiard import current_process
        _counter[0] += 1
        self._identity = tuple(getattr(current_process(), '_identity', ())) + (_counter[0],)
        self._target = _target_url(target)
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self.name = name or 'NodeProcess-%s' % ':'.join(str(i) for i in self._identity)
        self.daemon = daemon
        self._node = node
        self._entry = entry
        self._env = env
        self._cwd = cwd or os.getcwd()
        self._popen = None
        self.startup_error = None

    def _payload(self, popen):
        return _bootstrap_payload(popen, self.name, self._identity, self.daemon, self._cwd, self._target,
                                  self._args, self._kwargs, self._node, self._entry)

    def start(self):
        assert self._popen is None, 'cannot start a process twice'
        from billiard.connection import Connection
        popen = _SpawningPopen()
        prep_bytes, spec_bytes = self._payload(popen)
        ours, theirs = socket.socketpair()
        try:
            cmd = child_command(self._node, self._target, self._cwd, self._entry) + ['--billiard-ts-fd', str(theirs.fileno())]
            self._popen = subprocess.Popen(cmd, pass_fds=popen.fds + [theirs.fileno()], env=self._env, cwd=self._cwd)
        finally:
            theirs.close()
        channel = Connection(ours.detach())
        try:
            channel.send_bytes(prep_bytes)
            channel.send_bytes(spec_bytes)
            reply = pickle.loads(channel.recv_bytes())
        except EOFError:
            reply = ('error', 'EOFError', 'the child exited before it started its target', '')
        finally:
            channel.close()
        if reply[0] != 'ready':
            self.startup_error = '%s: %s' % (reply[1], reply[2])

    def join(self, timeout=None):
        assert self._popen is not None, 'can only join a started process'
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def is_alive(self):
        return self._popen is not None and self._popen.poll() is None

    def terminate(self):
        self._popen.terminate()

    def kill(self):
        self._popen.kill()

    @property
    def exitcode(self):
        return None if self._popen is None else self._popen.poll()

    @property
    def pid(self):
        return None if self._popen is None else self._popen.pid


# ---------------------------------------------------------------------------
# Node workers in a real billiard Pool (spec/pool.md section 8a).


class NodeTask:
    """A JavaScript function for a Node worker: node_task('tasks.mjs#square').

    It pickles as `billiard_ts.node_task('<module URL>#<export>')`, which a
    Node worker turns into the module's export. A Python process (a Python
    worker, say) that loads it gets this object back, and calling it raises
    TypeError: only a Node worker can run it."""

    __slots__ = ('url', 'name')

    def __init__(self, spec):
        url, _, name = _target_url(spec).rpartition('#')
        self.url = url
        self.name = name

    @property
    def spec(self):
        """'<module URL>#<export>', as a Node worker names it."""
        return '%s#%s' % (self.url, self.name)

    def __reduce__(self):
        return (node_task, (self.spec,))

    def __call__(self, *args, **kwargs):
        raise TypeError('%r is a Node task: only a Node worker can run it' % (self,))

    def __eq__(self, other):
        return isinstance(other, NodeTask) and (self.url, self.name) == (other.url, other.name)

    def __hash__(self):
        return hash((self.url, self.name))

    def __repr__(self):
        return 'node_task(%r)' % (self.spec,)


def node_task(spec):
    """The Node task `spec`, '<module>#<export>': a path (relative to the
    current directory) or file: URL of a JavaScript or TypeScript module, and
    the name of a function it exports (sync or async)."""
    return spec if isinstance(spec, NodeTask) else NodeTask(spec)


_node_implementations = {}


def _qualified_name(func):
    """`module.qualname` as pickle writes a global (operator.mul is '_operator.mul')."""
    if isinstance(func, str):
        module, _, attr = func.rpartition('.')
        try:
            import importlib
            obj = importlib.import_module(module)
            for part in attr.split('.'):
                obj = getattr(obj, part)
        except (ImportError, AttributeError, ValueError):
            return func
        func = obj
    module = getattr(func, '__module__', None)
    qualname = getattr(func, '__qualname__', None)
    if module is None or qualname is None:
        raise TypeError('%r is not a module-level function' % (func,))
    return '%s.%s' % (module, qualname)


def register_node_task(func, spec):
    """Runs the Python function `func` (or its qualified name) as the Node
    task `spec` in Node workers, for every NodePool created afterwards. With
    it, one task can go to a mixed pool: Python workers run `func`, Node
    workers run `spec`. Returns `func`."""
    _node_implementations[_qualified_name(func)] = node_task(spec).spec
    return func


def _package_module_url(script, module):
    """The file: URL of `module` (e.g. 'pool/worker') in the package tree of the child entry `script`."""
    root = os.path.dirname(os.path.dirname(script))
    path = os.path.join(root, module + os.path.splitext(script)[1])
    return urllib.parse.urljoin('file:', urllib.request.pathname2url(path))


class _NodeWorkerOptions:
    def __init__(self, node, entry, cwd, initializer, initargs, implementations, load_limits=None):
        self.node = node
        self.load_limits = dict(load_limits) if load_limits else None
        self.entry = entry
        self.cwd = cwd
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self.implementations = implementations


def _node_worker_process_class():
    from billiard.popen_fork import Popen as ForkPopen
    from billiard.process import BaseProcess

    class NodeWorkerPopen(ForkPopen):
        """Starts a Node pool worker the way billiard's spawn starts a Python
        one (spawnv_passfds, a sentinel pipe, waitpid): the pool sees the Node
        process's own pid, waits on it, and signals it."""
        method = 'spawn'

        def __init__(self, process_obj):
            self._fds = []
            super().__init__(process_obj)

        def duplicate_for_child(self, fd):
            self._fds.append(fd)
            return fd

        def DupFd(self, fd):
            from billiard.popen_spawn_posix import _DupFd
            return _DupFd(fd)

        def _launch(self, process_obj):
            import shutil
            from billiard.compat import spawnv_passfds
            from billiard.connection import Connection
            opts = process_obj._node_options
            worker = process_obj._target
            cmd = child_command(opts.node, None, opts.cwd, opts.entry)
            target = _package_module_url(cmd[-1], os.path.join('pool', 'worker')) + '#billiardPoolWorker'
            args = (worker.inq, worker.outq, worker.synq, worker.maxtasks, worker.max_memory_per_child,
                    opts.initializer, opts.initargs, opts.implementations, opts.load_limits)
            prep, spec = _bootstrap_payload(self, process_obj.name, process_obj._identity, process_obj.daemon,
                                            opts.cwd, target, args, {}, opts.node, opts.entry)
            ours, theirs = socket.socketpair()
            parent_r, child_w = os.pipe()
            try:
                cmd = cmd + ['--billiard-ts-fd', str(theirs.fileno())]
                exe = shutil.which(cmd[0]) or cmd[0]
                self.pid = spawnv_passfds(exe, cmd, self._fds + [theirs.fileno(), child_w])
            except BaseException:
                os.close(parent_r)
                ours.close()
                raise
            finally:
                theirs.close()
                os.close(child_w)
            self.sentinel = parent_r
            channel = Connection(ours.detach())
            try:
                channel.send_bytes(prep)
                channel.send_bytes(spec)
            except OSError:
                pass  # the child died at once: the pool sees its exit code
            finally:
                channel.close()

    class NodePoolWorker(BaseProcess):
        """A billiard pool worker that is a Node process (see NodePool)."""
        _start_method = 'spawn'

        @staticmethod
        def _Popen(process_obj):
            return NodeWorkerPopen(process_obj)

    return NodePoolWorker


def _pool_class():
    import threading
    from billiard import get_context
    from billiard.pool import Pool

    class NodePool(Pool):
        """A billiard Pool whose workers are Node processes, all or some.

            from billiard_ts import NodePool, node_task

            with NodePool(4, soft_timeout=5, timeout=10) as pool:
                print(pool.map(node_task('tasks.mjs#square'), range(10)))

        It is billiard's own Pool: its threads, timeouts, restarts, callbacks
        and options work as they do for Python workers. A Node worker runs
        billiard-ts's pool worker loop on the pool's shared queues, taking
        their named semaphores as billiard's workers do; so the pool's
        context must not be 'fork' (its semaphores have no names): the
        default is billiard's 'spawn', and 'forkserver' works too.

        - `node_processes`: how many workers are Node (the first indexes),
          the rest Python. None (the default): all of them.
        - `node_tasks`: {python function or 'module.qualname': 'tasks.mjs#fn'},
          Node implementations of Python functions (see register_node_task).
          A pool with Python workers refuses node_task(...) tasks, and one
          with Node workers refuses Python functions that have no Node
          implementation, when they are submitted: any worker may take any
          job.
        - `node_initializer`, `node_initargs`: 'module#export' called in each
          Node worker before its first job (`initializer` is for Python ones).
        - `node`: the node executable; `entry`: 'dist' or 'source' (see
          child_command); `cwd`: the directory the Node workers run in.
        - `node_load_limits`: {'maxHashCollisions': ..., ...}, the limits
          billiard-ts's unpickler loads the Node workers' jobs with, over its
          defaults (billiard-ts's LoadLimits). A job over them fails with
          pickle.UnpicklingError and the worker goes on.

        `on_process_exit` runs in Python workers only; `allow_restart`'s
        restart() reaches Python workers only.
        """

        def __init__(self, processes=None, initializer=None, initargs=(), *args, node_processes=None,
                     node_tasks=None, node_initializer=None, node_initargs=(), node='node', entry=None,
                     cwd=None, context=None, node_load_limits=None, **kwargs):
            context = context or get_context('spawn')
            if context.get_start_method() == 'fork':
                raise ValueError("a NodePool needs a 'spawn' or 'forkserver' context: Node workers take the "
                                 "pool's named semaphores, and a 'fork' context's have no names")
            total = processes or os.cpu_count() or 1
            if node_processes is not None and not 0 <= node_processes <= total:
                raise ValueError('node_processes must be between 0 and processes (%d), not %r' % (total, node_processes))
            self._node_count = total if node_processes is None else node_processes
            self._node_all = node_processes is None
            implementations = dict(_node_implementations)
            for func, spec in (node_tasks or {}).items():
                implementations[_qualified_name(func)] = node_task(spec).spec
            self._node_implementations = implementations
            cwd = cwd or os.getcwd()
            init = None if node_initializer is None else node_task(node_initializer).spec
            self._node_options = _NodeWorkerOptions(node, entry, cwd, init, node_initargs, implementations, node_load_limits)
            self._node_process_class = _node_worker_process_class()
            self._creating = threading.local()
            if self._node_count:
                child_command(node, None, cwd, entry)  # a missing build or tsx fails here, not in every worker
            super().__init__(total, initializer, initargs, *args, context=context, **kwargs)

        def _is_node_index(self, i):
            return self._node_all or (i is not None and i < self._node_count)

        def _create_worker_process(self, i):
            self._creating.index = i
            try:
                return super()._create_worker_process(i)
            finally:
                self._creating.index = None

        def WorkerProcess(self, worker):
            if not self._is_node_index(getattr(self._creating, 'index', None)):
                return super().WorkerProcess(worker)
            proc = self._node_process_class(target=worker)
            proc._node_options = self._node_options
            return worker.contribute_to_object(proc)

        @property
        def _python_count(self):
            return 0 if self._node_all else self._processes - self._node_count

        def _check_task(self, func):
            if isinstance(func, NodeTask):
                if self._python_count > 0:
                    raise TypeError('%r cannot go to this pool: it has %d Python workers, and any worker may take '
                                    'any job (register a Python function with a Node implementation instead: '
                                    'register_node_task)' % (func, self._python_count))
                return
            if self._node_count > 0:
                try:
                    name = _qualified_name(func)
                except TypeError:
                    name = None
                if name not in self._node_implementations:
                    raise TypeError('%r has no Node implementation, and this pool has Node workers: use '
                                    "node_task('module#export'), or register one (node_tasks=, "
                                    'register_node_task)' % (func,))

        def apply_async(self, func, *args, **kwargs):
            self._check_task(func)
            return super().apply_async(func, *args, **kwargs)

        def _map_async(self, func, *args, **kwargs):
            self._check_task(func)
            return super()._map_async(func, *args, **kwargs)

        def imap(self, func, *args, **kwargs):
            self._check_task(func)
            return super().imap(func, *args, **kwargs)

        def imap_unordered(self, func, *args, **kwargs):
            self._check_task(func)
            return super().imap_unordered(func, *args, **kwargs)

    return NodePool


def __getattr__(name):
    # NodePool subclasses billiard's Pool: made on first use, so that importing
    # this module (for NodeProcess, node_task) does not import billiard.pool.
    if name == 'NodePool':
        cls = globals()['NodePool'] = _pool_class()
        return cls
    raise AttributeError(name)
