"""Exceptions of multiprocessing, billiard and builtins, pickled and
unpickled by Python, for test/exceptions-interop.test.ts.

    exceptions_peer.py dump   prints one JSON line per case and protocol:
                              {"case", "protocol", "hex"}: pickle.dumps of
                              the case's exception at that protocol
    exceptions_peer.py load   reads JSON lines {"label", "hex"} from stdin and
                              prints one JSON line for each: {"label",
                              "type": module.qualname of what pickle.loads
                              gave, "args": repr(args), "str": str(e)}, or
                              {"label", "error": ...} when loading failed

The billiard cases are left out where billiard is not installed (CPython
3.12+ here have the standard library only); the first line printed is
{"python": version, "billiard": bool, "cases": [...]}.
"""
import json
import multiprocessing
import pickle
import sys

CASES = {
    'ProcessError': lambda: multiprocessing.ProcessError('boom'),
    'ProcessError()': lambda: multiprocessing.ProcessError(),
    'BufferTooShort': lambda: multiprocessing.BufferTooShort(b'\x00abc'),
    'TimeoutError': lambda: multiprocessing.TimeoutError(),
    'TimeoutError(msg)': lambda: multiprocessing.TimeoutError('late'),
    'AuthenticationError': lambda: multiprocessing.AuthenticationError('digest received was wrong'),
    'ValueError': lambda: ValueError('bad value'),
    'EOFError': lambda: EOFError('Ran out of input'),
    'OSError': lambda: OSError('handle is closed'),
    'AssertionError': lambda: AssertionError('cannot start a process twice'),
    'RuntimeError': lambda: RuntimeError('context has already been set'),
    'FileNotFoundError': lambda: FileNotFoundError(2, 'No such file or directory'),
    # CPython pickles these as _pickle.* (the C accelerator's classes, re-exported by pickle).
    'UnpicklingError': lambda: pickle.UnpicklingError('pickle data was truncated'),
    'PicklingError': lambda: pickle.PicklingError('cannot pickle'),
    'PickleError': lambda: pickle.PickleError('base'),
}

try:
    from billiard import exceptions as bex
except ImportError:
    bex = None

if bex is not None:
    CASES.update({
        'TimeLimitExceeded': lambda: bex.TimeLimitExceeded(3.0),
        'TimeLimitExceeded(2.5)': lambda: bex.TimeLimitExceeded(2.5),
        'SoftTimeLimitExceeded': lambda: bex.SoftTimeLimitExceeded(),
        'WorkerLostError': lambda: bex.WorkerLostError('Worker exited prematurely: exitcode 7 Job: 12.'),
        'Terminated': lambda: bex.Terminated(9),
        'RestartFreqExceeded': lambda: bex.RestartFreqExceeded('5 in 1s'),
        'CoroStop': lambda: bex.CoroStop(),
    })


def qualname(obj):
    t = type(obj)
    return '%s.%s' % (t.__module__, t.__qualname__)


def main():
    mode = sys.argv[1]
    print(json.dumps({'python': sys.version.split()[0], 'billiard': bex is not None, 'cases': list(CASES)}), flush=True)
    if mode == 'dump':
        for name, make in CASES.items():
            for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
                print(json.dumps({'case': name, 'protocol': protocol, 'hex': pickle.dumps(make(), protocol).hex()}))
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            value = pickle.loads(bytes.fromhex(req['hex']))
            out = {'label': req['label'], 'type': qualname(value), 'args': repr(getattr(value, 'args', None)), 'str': str(value)}
        except Exception as e:  # reported to the test, which fails on it
            out = {'label': req['label'], 'error': '%s: %s' % (qualname(e), e)}
        print(json.dumps(out), flush=True)


if __name__ == '__main__':
    main()
