"""Numba kernel of FarmHash Fingerprint64 (farmhashna::Hash64 in google/farmhash, MIT).

Module-level functions, so Numba can cache the compiled code on disk (cache=True) and later
processes load it instead of compiling again. Used through kfkit.warehouse.farmhash.fingerprint64_arrow.
"""

import sys

import numba
from llvmlite import ir
from numba import uint64
from numba.core import types
from numba.extending import intrinsic


k0 = uint64(0xC3A5C85C97CB3127)
k1 = uint64(0xB492B66FBE98F273)
k2 = uint64(0x9AE16A3B2F90404F)
seed = uint64(81)

jit = numba.njit(cache=True, nogil=True, _nrt=False)  # no allocation: no atomic reference counting per call
inline = numba.njit(cache=True, nogil=True, _nrt=False, inline="always")


@inline
def rot(v, s):
    return (v >> uint64(s)) | (v << uint64(64 - s))


def _load_codegen(bits):
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        pointer = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(bits).as_pointer())
        word = builder.load(pointer, align=1)
        return builder.zext(word, ir.IntType(64)) if bits < 64 else word
    return codegen


@intrinsic
def _load64(typingctx, array, index):
    """The 8 bytes at array[index:] (a uint8 array) as a uint64 in the machine's byte order: one unaligned load."""
    return types.uint64(array, types.intp), _load_codegen(64)


@intrinsic
def _load32(typingctx, array, index):
    """The 4 bytes at array[index:] as a uint32, widened to uint64."""
    return types.uint64(array, types.intp), _load_codegen(32)


if sys.byteorder == "little":  # FarmHash reads its words little-endian: the machine's own loads
    @inline
    def fetch64(d, i):
        return _load64(d, i)

    @inline
    def fetch32(d, i):
        return _load32(d, i)
else:
    @inline
    def fetch64(d, i):
        r = uint64(0)
        for j in range(8):
            r |= uint64(d[i + j]) << uint64(8 * j)
        return r

    @inline
    def fetch32(d, i):
        r = uint64(0)
        for j in range(4):
            r |= uint64(d[i + j]) << uint64(8 * j)
        return r


@inline
def shift_mix(v):
    return v ^ (v >> uint64(47))


@inline
def len16(u, v, mul):
    a = (u ^ v) * mul
    a ^= a >> uint64(47)
    b = (v ^ a) * mul
    b ^= b >> uint64(47)
    return b * mul


@inline
def weak32(d, i, a, b):
    w = fetch64(d, i)
    x = fetch64(d, i + 8)
    y = fetch64(d, i + 16)
    z = fetch64(d, i + 24)
    a += w
    b = rot(b + a + z, 21)
    c = a
    a += x
    a += y
    b += rot(a, 44)
    return a + z, b + c


@jit
def hash64(d, s, n):
    ln = uint64(n)
    if n <= 16:
        if n >= 8:
            mul = k2 + ln * uint64(2)
            a = fetch64(d, s) + k2
            b = fetch64(d, s + n - 8)
            c = rot(b, 37) * mul + a
            dd = (rot(a, 25) + b) * mul
            return len16(c, dd, mul)
        if n >= 4:
            mul = k2 + ln * uint64(2)
            a = fetch32(d, s)
            return len16(ln + (a << uint64(3)), fetch32(d, s + n - 4), mul)
        if n > 0:
            a = uint64(d[s])
            b = uint64(d[s + (n >> 1)])
            c = uint64(d[s + n - 1])
            y = (a + (b << uint64(8))) & uint64(0xFFFFFFFF)
            z = (ln + (c << uint64(2))) & uint64(0xFFFFFFFF)
            return shift_mix(y * k2 ^ z * k0) * k2
        return k2
    if n <= 32:
        mul = k2 + ln * uint64(2)
        a = fetch64(d, s) * k1
        b = fetch64(d, s + 8)
        c = fetch64(d, s + n - 8) * mul
        dd = fetch64(d, s + n - 16) * k2
        return len16(rot(a + b, 43) + rot(c, 30) + dd, a + rot(b + k2, 18) + c, mul)
    if n <= 64:
        mul = k2 + ln * uint64(2)
        a = fetch64(d, s) * k2
        b = fetch64(d, s + 8)
        c = fetch64(d, s + n - 8) * mul
        dd = fetch64(d, s + n - 16) * k2
        y = rot(a + b, 43) + rot(c, 30) + dd
        z = len16(y, a + rot(b + k2, 18) + c, mul)
        e = fetch64(d, s + 16) * mul
        f = fetch64(d, s + 24)
        g = (y + fetch64(d, s + n - 32)) * mul
        h = (z + fetch64(d, s + n - 24)) * mul
        return len16(rot(e + f, 43) + rot(g, 30) + h, e + rot(f + a, 18) + g, mul)
    x = seed
    y = seed * k1 + uint64(113)
    z = shift_mix(y * k2 + uint64(113)) * k2
    v0 = uint64(0)
    v1 = uint64(0)
    w0 = uint64(0)
    w1 = uint64(0)
    x = x * k2 + fetch64(d, s)
    end = s + ((n - 1) // 64) * 64
    last64 = s + n - 64
    p = s
    while True:
        x = rot(x + y + v0 + fetch64(d, p + 8), 37) * k1
        y = rot(y + v1 + fetch64(d, p + 48), 42) * k1
        x ^= w1
        y += v0 + fetch64(d, p + 40)
        z = rot(z + w0, 33) * k1
        v0, v1 = weak32(d, p, v1 * k1, x + w0)
        w0, w1 = weak32(d, p + 32, z + w1, y + fetch64(d, p + 16))
        x, z = z, x
        p += 64
        if p == end:
            break
    mul = k1 + ((z & uint64(0xFF)) << uint64(1))
    p = last64
    w0 += uint64((n - 1) & 63)
    v0 += w0
    w0 += v0
    x = rot(x + y + v0 + fetch64(d, p + 8), 37) * mul
    y = rot(y + v1 + fetch64(d, p + 48), 42) * mul
    x ^= w1 * uint64(9)
    y += v0 * uint64(9) + fetch64(d, p + 40)
    z = rot(z + w0, 33) * mul
    v0, v1 = weak32(d, p, v1 * mul, x + w0)
    w0, w1 = weak32(d, p + 32, z + w1, y + fetch64(d, p + 16))
    x, z = z, x
    return len16(len16(v0, w0, mul) + shift_mix(y) * k0 + z, len16(v1, w1, mul) + x, mul)


@jit
def many(data, offsets, out):
    for i in range(out.shape[0]):
        out[i] = hash64(data, offsets[i], offsets[i + 1] - offsets[i])
