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

__all__ = ['NodeProcess', 'child_command']

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
        from billiard import context as billiard_context, current_process, util
        from multiprocessing import context as mp_context
        # The authkey pickles only while the spawning popen is set, as
        # billiard.process.AuthenticationString (spec/connection.md section 5).
        prep = {
            'name': self.name,
            'authkey': current_process().authkey,
            'identity': self._identity,
            'daemon': bool(self.daemon),
            'parent_pid': os.getpid(),
            'parent_name': current_process().name,
            'dir': self._cwd,
            'start_method': 'spawn',
            # The parent's logging, as billiard's get_preparation_data sends it.
            'log_to_stderr': util._log_to_stderr,
            'modules': [_package_url(child_command(self._node, self._target, self._cwd, self._entry)[-1])],
        }
        if util._logger is not None:
            prep['log_level'] = util._logger.getEffectiveLevel()
        spec = {'target': self._target, 'cls': None, 'args': self._args, 'kwargs': self._kwargs, 'state': {}}
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
