"""A Python peer for the demo and for tests: reads frames from stdin, each a
4-byte big-endian length and a pickle; prints the unpickled value's repr to
stderr; answers with a frame holding {'python': version, 'got': value,
'repr': repr(value)} pickled at the request's protocol.

Standard library only, so any CPython 3 runs it.
"""
import pickle
import pickletools
import struct
import sys


def read_exact(n):
    data = b''
    while len(data) < n:
        chunk = sys.stdin.buffer.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main():
    while True:
        header = read_exact(4)
        if header is None:
            return
        (size,) = struct.unpack('>i', header)
        data = read_exact(size)
        value = pickle.loads(data)
        protocol = next(pickletools.genops(data))[1] if data[:1] == b'\x80' else 0
        print('python %s got: %r' % (sys.version.split()[0], value), file=sys.stderr, flush=True)
        reply = pickle.dumps({'python': sys.version.split()[0], 'got': value, 'repr': repr(value)}, protocol)
        sys.stdout.buffer.write(struct.pack('>i', len(reply)) + reply)
        sys.stdout.buffer.flush()


if __name__ == '__main__':
    main()
