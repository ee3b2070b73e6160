"""What CPython's unpickler makes of each input, for the pickle tests
(test/pickle-error-classes.test.ts, test/pickle-limits.test.ts): reads one
line per pickle on stdin, '=' then its hex (so that an empty pickle is a line
too), and prints one JSON line for each: {"hex", "raises": the exception's
class name, or null when the pickle loads, "message", "value": the loaded
value as JSON (tuples and lists as arrays, dicts as [key, value] pairs, bytes
as {"bytes": hex}), or its repr when it has no such form}. Standard library
only.
"""
import json
import pickle
import resource
import sys

# A LONG_BINPUT far past the memo's end makes CPython grow its memo array to
# twice the index: under this limit that is a MemoryError, not an out-of-memory kill.
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def plain(v, depth=0):
    if depth > 50:
        return '...'
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (tuple, list)):
        return [plain(x, depth + 1) for x in v]
    if isinstance(v, dict):
        return {'dict': [[plain(k, depth + 1), plain(x, depth + 1)] for k, x in v.items()]}
    if isinstance(v, (bytes, bytearray)):
        return {'bytes': bytes(v).hex()}
    return {'repr': repr(v)}


for line in sys.stdin:
    line = line.strip()
    if line == '':
        continue
    data = bytes.fromhex(line[1:])
    try:
        value = pickle.loads(data)
        out = {'hex': line[1:], 'raises': None, 'message': '', 'value': plain(value)}
    except BaseException as e:  # noqa: B902 - the class is the answer
        out = {'hex': line[1:], 'raises': type(e).__name__, 'message': str(e)[:200]}
    print(json.dumps(out), flush=True)
