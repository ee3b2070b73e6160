"""Test classes for the round-trip suite (test/pickle-roundtrip.test.ts, driven
by compat/peers/pickle_roundtrip.py): the kinds of objects CPython's own
pickle tests use (Lib/test/pickletester.py): subclasses of the builtin
types, `__reduce__`, `__reduce_ex__`, `__getnewargs__`, `__getnewargs_ex__`,
`__getstate__`/`__setstate__`, slots, state setters, extension codes, nested
classes, Python 2's INST and OBJ, and recursion through each container.

`CASES` lists (name, factory, protocols): `factory()` builds a fresh
original, `protocols` the protocols CPython writes it at (and reads its own
pickle back to an equal object). `same(a, b)` is the structural equality the
suite checks with. Standard library only.
"""
import copyreg

from pyequal import same as same_scalar

# ------------------------------------------------------------------ equality


def _slot_names(cls):
    names = []
    for c in cls.__mro__:
        slots = c.__dict__.get('__slots__', ())
        for n in (slots,) if isinstance(slots, str) else slots:
            if n not in ('__dict__', '__weakref__') and n not in names:
                names.append(n)
    return names


_BASES = (bool, int, float, complex, str, bytes, bytearray)


def same(a, b, memo=None):
    """Structural equality: exact types, builtin-base values, items, `__dict__`
    and slots, with cycles and shared objects matched one to one (an object
    reached twice in `a` must be the same object twice in `b`)."""
    memo = {} if memo is None else memo
    if type(a) is not type(b):
        return False
    t = type(a)
    if t in (type(None), bool, int, float, complex, str, bytes) or isinstance(a, type):
        return same_scalar(a, b)
    if id(a) in memo:
        return memo[id(a)] is b
    memo[id(a)] = b
    for base in _BASES:
        if isinstance(a, base):
            if not same_scalar(base(a), base(b)):
                return False
            break
    if isinstance(a, (list, tuple)):
        if len(a) != len(b) or not all(same(x, y, memo) for x, y in zip(a, b)):
            return False
    elif isinstance(a, dict):
        if len(a) != len(b):
            return False
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            if not (same(ka, kb, memo) and same(va, vb, memo)):
                return False
    elif isinstance(a, (set, frozenset)):
        if len(a) != len(b):
            return False
        rest = list(b)
        for x in a:
            for i, y in enumerate(rest):
                trial = dict(memo)
                if same(x, y, trial):
                    memo.update(trial)
                    del rest[i]
                    break
            else:
                return False
    elif not hasattr(a, '__dict__') and not _slot_names(t):
        return a == b
    if hasattr(a, '__dict__') and not same(dict(vars(a)), dict(vars(b)), memo):
        return False
    for n in _slot_names(t):
        if hasattr(a, n) != hasattr(b, n) or (hasattr(a, n) and not same(getattr(a, n), getattr(b, n), memo)):
            return False
    return True


class Eq:
    """`==` is the structural `same`, so a failing assertion can compare with `==`."""
    __slots__ = ()

    def __eq__(self, other):
        return same(self, other)

    __hash__ = object.__hash__


# ------------------------------------------------------------------ subclasses of builtins (pickletester's myclasses)

class MyInt(int):
    sample = 1


class MyFloat(float):
    sample = 1.0


class MyComplex(complex):
    sample = 1.0 + 0.0j


class MyStr(str):
    sample = 'hello'


class MyUnicode(str):
    sample = 'hello \u1234'


class MyBytes(bytes):
    sample = b'\x00\xffab'


class MyByteArray(bytearray):
    sample = b'\x01\x02'


class MyTuple(tuple):
    sample = (1, 2, 3)


class MyList(list):
    sample = [1, 2, 3]


class MyDict(dict):
    sample = {'a': 1, 'b': 2}


class MySet(set):
    sample = {'a', 'b'}


class MyFrozenSet(frozenset):
    sample = frozenset({'a', 'b'})


MYCLASSES = [MyInt, MyFloat, MyComplex, MyStr, MyUnicode, MyBytes, MyByteArray, MyTuple, MyList, MyDict, MySet, MyFrozenSet]


class myint(int):
    """The issue's example: an int subclass whose __init__ keeps the text."""
    def __init__(self, x):
        self.str = str(x)


class SlotList(MyList):
    __slots__ = ['foo']


class SimpleNewObj(int):
    def __init__(self, *args, **kwargs):
        raise TypeError("SimpleNewObj.__init__() didn't expect to get called")


class ComplexNewObj(SimpleNewObj):
    def __getnewargs__(self):
        return ('%X' % self, 16)


class ComplexNewObjEx(SimpleNewObj):
    def __getnewargs_ex__(self):
        return ('%X' % self,), {'base': 16}


# ------------------------------------------------------------------ plain objects

class Point(Eq):
    def __init__(self, x, y):
        self.x, self.y = x, y


class Empty(Eq):
    pass


class Object(Eq):
    pass


class Slotted(Eq):
    __slots__ = ('a', 'b')


class SlotDict(Eq):
    __slots__ = ('a', '__dict__')


class WithState(Eq):
    def __init__(self):
        self.v = None

    def __getstate__(self):
        return ('custom', self.v)

    def __setstate__(self, s):
        self.v = s[1]


class NewArgs(Eq):
    def __new__(cls, *a):
        return object.__new__(cls)

    def __init__(self, *a):
        raise TypeError('NewArgs.__init__ must not run when loading')

    def __getnewargs__(self):
        return (7,)


class KwOnly(Eq):
    def __new__(cls, *, k):
        o = object.__new__(cls)
        o.k = k
        return o

    def __getnewargs_ex__(self):
        return ((), {'k': self.k})


class ArgsAndKw(Eq):
    def __new__(cls, a, *, k):
        o = object.__new__(cls)
        o.a, o.k = a, k
        return o

    def __getnewargs_ex__(self):
        return ((self.a,), {'k': self.k})


class Outer:
    class Inner(Eq):
        def __init__(self):
            self.n = 1


class D(Eq):
    """Python 2's INST without arguments must not run __init__ (pickletester's D)."""
    def __init__(self, arg):
        raise TypeError('D.__init__ must not run when loading')


class InitArgs(Eq):
    """INST with arguments runs __init__ (pickletester's initarg)."""
    def __init__(self, a, b):
        self.a, self.b = a, b

    def __getinitargs__(self):
        return self.a, self.b


# ------------------------------------------------------------------ reduce protocol (pickletester's REX_*)

class REX_reduce(Eq):
    def __init__(self, v=None):
        self.v = v

    def __reduce__(self):
        return REX_reduce, (self.v,)


class REX_reduce_ex(Eq):
    def __init__(self, v=None):
        self.v = v

    def __reduce_ex__(self, proto):
        return REX_reduce_ex, (self.v,)


class REX_base(Eq):
    """Calls object.__reduce_ex__ from its own."""
    def __init__(self):
        self.v = 3

    def __reduce_ex__(self, proto):
        return object.__reduce_ex__(self, proto)


class REX_six(Eq):
    """The 4th item of a reduce value (listitems)."""
    def __init__(self, items=None):
        self.items = items if items is not None else []

    def append(self, item):
        self.items.append(item)

    def extend(self, items):
        self.items.extend(items)

    def __reduce__(self):
        return type(self), (), None, iter(self.items), None


class REX_seven(Eq):
    """The 5th item of a reduce value (dictitems)."""
    def __init__(self, table=None):
        self.table = table if table is not None else {}

    def __setitem__(self, key, value):
        self.table[key] = value

    def __reduce__(self):
        return type(self), (), None, None, iter(self.table.items())


class REX_state(Eq):
    """The 3rd item of a reduce value (state), to __setstate__."""
    def __init__(self, state=None):
        self.state = state

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):
        return type(self), (), self.state


def set_by_setter(obj, state):
    vars(obj).update(state)


class WithSetter(Eq):
    """The 6th item of a reduce value (state_setter) takes precedence over __setstate__."""
    def __setstate__(self, state):
        raise TypeError('WithSetter.__setstate__ must not be called: the state setter is')

    def __reduce__(self):
        return WithSetter, (), dict(vars(self)), None, None, set_by_setter


class K(Eq):
    """Hashable immutable key holding mutable data (pickletester's K)."""
    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return K, (self.value,)


# ------------------------------------------------------------------ extension codes (copyreg.add_extension)

class Ext1(Eq):
    def __init__(self):
        self.v = 1


class Ext2(list):
    pass


class Ext4(Eq):
    def __init__(self):
        self.v = 4


EXTENSIONS = [(__name__, 'Ext1', 0xf1), (__name__, 'Ext2', 0x1234), (__name__, 'Ext4', 0x12345678)]
for _m, _n, _c in EXTENSIONS:
    copyreg.add_extension(_m, _n, _c)


# ------------------------------------------------------------------ the cases

def _with_attrs(obj, **attrs):
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def _slotted():
    o = Slotted()
    o.a, o.b = 1, 2.0
    return o


def _slotdict():
    o = SlotDict()
    o.a, o.z = 1, 0.0
    return o


def _withstate():
    o = WithState()
    o.v = [1, 2]
    return o


def _kwonly():
    return KwOnly(k=3)


def _point():
    p = Point(1, 2)
    p.zero, p.two, p.neg, p.half = 0.0, 2.0, -0.0, 0.5
    return p


def _d_inst():
    o = D.__new__(D)
    o.x = 1
    return o


def _rex_six():
    return REX_six([1, 2.0, 'x'])


def _rex_seven():
    return REX_seven({'a': 1, 2: 'b'})


def _nested():
    return Outer.Inner()


def _ext():
    e2 = Ext2([1, 2])
    e2.tag = 't'
    return [Ext1(), e2, Ext4(), Ext1, Ext2, Ext4]


def _shared():
    p = Point(1, 2)
    return [p, p, Point(3, 4.0)]


def _recursive_list_subclass():
    l = MyList()
    l.append(l)
    return l


def _recursive_tuple_and_list_subclass(outer):
    t = (MyList(),)
    t[0].append(t)
    return t if outer else t[0]


def _recursive_dict_subclass():
    d = MyDict()
    d[1] = d
    return d


def _recursive_tuple_and_dict_subclass(outer):
    t = (MyDict(),)
    t[0][1] = t
    return t if outer else t[0]


def _recursive_dict_key(cls):
    d = cls()
    d[K(d)] = 1
    return d


def _recursive_tuple_and_dict_key(cls, outer):
    t = (cls(),)
    t[0][K(t)] = 1
    return t if outer else t[0]


def _recursive_set(outer):
    y = set()
    y.add(K(y))
    return y if outer else next(iter(y))


def _recursive_inst():
    i = Object()
    i.attr = i
    return i


def _recursive_multi():
    l = []
    d = {1: l}
    i = Object()
    i.attr = d
    l.append(i)
    return l


def _collection_and_inst(factory, outer):
    o = Object()
    o.attr = factory([o])
    return o if outer else o.attr


def _recursive_like(cls):
    if cls is REX_six:
        r = REX_six()
        r.append(r)
    else:
        r = REX_seven()
        r[1] = r
    return r


def _recursive_inst_state():
    y = REX_state()
    y.state = y
    return y


def _recursive_tuple_and_inst_state(outer):
    t = (REX_state(),)
    t[0].state = t
    return t if outer else t[0]


def _recursive_setter():
    o = WithSetter()
    o.a = [o]
    o.b = {'self': o}
    return o


def _recursive_newobj_ex():
    o = KwOnly(k=None)
    o.k = [o]
    return o


def _recursive_reduce_arg():
    """A reduction whose arguments hold the object: the second, nested
    reduction fetches the list the first one is still filling."""
    r = REX_reduce()
    r.v = [r]
    return r


ALL = range(6)
P2 = range(2, 6)
P4 = range(4, 6)

CASES = []


def _add(name, factory, protocols=ALL):
    assert all(n != name for n, _, _ in CASES), name
    CASES.append((name, factory, list(protocols)))


for _cls in MYCLASSES:
    _add('%s' % _cls.__name__, (lambda c: lambda: _with_attrs(c(c.sample), foo=42, two=2.0))(_cls))
    _add('%s empty' % _cls.__name__, (lambda c: lambda: c())(_cls))
_add('myint', lambda: myint(4))
_add('SlotList', lambda: _with_attrs(SlotList([1, 2, 3]), foo=42, bar=0.0), P2)
_add('SimpleNewObj', lambda: _with_attrs(SimpleNewObj.__new__(SimpleNewObj, 0xface), abc=666))
_add('ComplexNewObj', lambda: _with_attrs(ComplexNewObj.__new__(ComplexNewObj, 0xface), abc=666))
_add('ComplexNewObjEx', lambda: _with_attrs(ComplexNewObjEx.__new__(ComplexNewObjEx, 0xface), abc=666))
_add('Point (integral floats)', _point)
_add('Empty', Empty)
_add('Slotted', _slotted, P2)
_add('SlotDict', _slotdict, P2)
_add('WithState', _withstate)
_add('NewArgs', lambda: NewArgs.__new__(NewArgs))
_add('KwOnly', _kwonly)
_add('ArgsAndKw', lambda: ArgsAndKw(1.0, k=[2]))
_add('Outer.Inner()', _nested)
_add('Outer.Inner class', lambda: Outer.Inner)
_add('REX_reduce', lambda: REX_reduce((1, 2.0)))
_add('REX_reduce_ex', lambda: REX_reduce_ex({'k': 0.0}))
_add('REX_base', REX_base)
_add('REX_six', _rex_six)
_add('REX_seven', _rex_seven)
_add('REX_state', lambda: REX_state({'s': 1.0}))
_add('state setter', lambda: _with_attrs(WithSetter(), a='attribute', f=2.0))
_add('extension codes', _ext)
_add('shared objects', _shared)
_add('recursive list subclass', _recursive_list_subclass, P2)
_add('recursive tuple and list subclass', lambda: _recursive_tuple_and_list_subclass(True), P2)
_add('recursive list subclass and tuple', lambda: _recursive_tuple_and_list_subclass(False), P2)
_add('recursive dict subclass', _recursive_dict_subclass, P2)
_add('recursive tuple and dict subclass', lambda: _recursive_tuple_and_dict_subclass(True), P2)
_add('recursive dict subclass and tuple', lambda: _recursive_tuple_and_dict_subclass(False), P2)
for _cls in (dict, MyDict):
    _add('recursive %s key' % _cls.__name__, (lambda c: lambda: _recursive_dict_key(c))(_cls), ALL if _cls is dict else P2)
    _add('recursive tuple and %s key' % _cls.__name__, (lambda c: lambda: _recursive_tuple_and_dict_key(c, True))(_cls), ALL if _cls is dict else P2)
    _add('recursive %s key and tuple' % _cls.__name__, (lambda c: lambda: _recursive_tuple_and_dict_key(c, False))(_cls), ALL if _cls is dict else P2)
_add('recursive set and key', lambda: _recursive_set(True), P4)
_add('recursive key and set', lambda: _recursive_set(False), P4)
_add('recursive inst', _recursive_inst)
_add('recursive multi', _recursive_multi)
for _label, _factory in (('list', list), ('tuple', tuple), ('dict', dict.fromkeys), ('set', set), ('frozenset', frozenset),
                         ('MyList', MyList), ('MyTuple', MyTuple), ('MyDict', MyDict.fromkeys), ('MySet', MySet), ('MyFrozenSet', MyFrozenSet)):
    _add('recursive inst and %s' % _label, (lambda f: lambda: _collection_and_inst(f, True))(_factory))
    _add('recursive %s and inst' % _label, (lambda f: lambda: _collection_and_inst(f, False))(_factory))
_add('recursive list-like (listitems)', lambda: _recursive_like(REX_six))
_add('recursive dict-like (dictitems)', lambda: _recursive_like(REX_seven))
_add('recursive inst state', _recursive_inst_state)
_add('recursive tuple and inst state', lambda: _recursive_tuple_and_inst_state(True))
_add('recursive inst state and tuple', lambda: _recursive_tuple_and_inst_state(False))
_add('recursive state setter', _recursive_setter)
_add('recursive newobj_ex', _recursive_newobj_ex)
_add('recursive reduce argument', _recursive_reduce_arg)

# Python 2's INST and OBJ, which CPython 3 reads but never writes: (name, bytes, factory of the value they load to).
M = __name__.encode()
RAW = [
    ('INST without arguments', b'(i' + M + b'\nD\np0\n(dp1\nVx\np2\nI1\nsb.', _d_inst),
    ('OBJ without arguments', b'(c' + M + b'\nD\nq\x00o}q\x01X\x01\x00\x00\x00xq\x02K\x01sb.', _d_inst),
    ('INST with arguments', b'(I1\nF2.0\ni' + M + b'\nInitArgs\np0\n(dp1\nVa\np2\nI1\nsVb\np3\nF2.0\nsb.', lambda: InitArgs(1, 2.0)),
]
