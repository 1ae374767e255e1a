"""Numba kernels: FLOAT64 spelled as BigQuery's CAST(FLOAT64 AS STRING), and whole split keys hashed in one pass.

BigQuery's spelling is ZetaSQL's RoundTripDoubleToString (kfkit.warehouse.json_functions.double_to_string,
the reference): printf's %.15g, or %.17g when the %.15g text does not read back as the same double.
Both need the double's exact decimal value rounded to 15 or 17 significant digits. Here the value
scaled to 17 digits, s = |x| * 10^(16-E) with 10^E <= |x| < 10^(E+1), is computed in double-double
arithmetic (10^k is held as hi + lo times a power of two, from exact fractions), accurate to about
2^-46 in units of the 17th digit. From s follow the 17-digit rounding, the 15-digit rounding
(s / 100), and whether the 15-digit decimal lies within the double's rounding interval (half an ulp
either side; read back with round-half-even). Whenever one of those decisions falls within MARGIN
of its boundary (an exact tie, a decimal exactly half an ulp away), and for subnormal and tiny values,
the kernel does not guess: it reports the value, and the caller spells it with the reference
instead. So every spelling it returns is the reference's.

Module-level functions so Numba caches them on disk (cache=True). Numba's cache only notices edits
to this file, not to _farmhash_kernel.py whose hash64 it calls: clear __pycache__ after editing that.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.cpython.unsafe.numbers import leading_zeros
from numba.extending import intrinsic

from kfkit.warehouse._farmhash_kernel import hash64

# no NRT: nothing here allocates, and without it every call that passes an array does no atomic
# reference counting; the spelling helpers are inlined into the loops (Numba does not, across jit functions)
jit = numba.njit(cache=True, nogil=True, _nrt=False)
inline = numba.njit(cache=True, nogil=True, _nrt=False, inline="always")

POW10_MIN = -400  # exact powers of ten from 10^POW10_MIN to 10^-POW10_MIN
MARGIN = 2.0 ** -30  # how close to a rounding boundary (in 17th-digit units) the kernel defers
MIN_EXPONENT_FIELD = 100  # below (|x| < 2^-923): deferred, like subnormals
SEPARATOR = 0x1F
DIGIT_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), dtype=np.uint8).copy()


def tables() -> np.ndarray:
    """Per exponent field and per decade within it: [E, threshold, hi, lo, margin] in a (2048, 2, 5) array.

    A double with exponent field F lies in [2^n, 2^(n+1)) (n = F - 1023), which holds at most one
    power of ten: E is the decade of 2^n, and E + 1 where the double is >= threshold (the least
    double >= 10^(E+1)). For the decade E (row [F, 0]) or E + 1 (row [F, 1]), hi + lo is
    10^(16 - decade) * 2^(F - 1075), so the 53-bit integer mantissa times hi + lo is the double
    scaled to 17 digits. Built from exact fractions; the scaling by 2^(F - 1075) is exact. margin is
    MARGIN, or 0 where hi is exactly 10^(16 - decade) * 2^(F - 1075) (lo is 0): there the product is
    exact, and an exact tie is broken as printf and strtod break it, to even.
    """
    from fractions import Fraction

    ks = range(POW10_MIN, -POW10_MIN + 1)
    hi = np.empty(len(ks))
    lo = np.empty(len(ks))
    f = np.empty(len(ks), dtype=np.int64)
    least = np.empty(len(ks))  # the least double >= 10^k
    for i, k in enumerate(ks):
        exact = Fraction(10) ** k
        e = exact.numerator.bit_length() - exact.denominator.bit_length()
        if Fraction(2) ** e > exact:
            e -= 1
        mantissa = exact / Fraction(2) ** e  # in [1, 2)
        hi[i] = float(mantissa)  # correctly rounded
        lo[i] = float(mantissa - Fraction(hi[i]))
        f[i] = e
        if k > 308:
            least[i] = math.inf
        elif k < -330:
            least[i] = 0.0
        else:
            near = float(exact)
            least[i] = near if Fraction(near) >= exact else math.nextafter(near, math.inf)
    out = np.zeros((2048, 2, 5))
    for field in range(MIN_EXPONENT_FIELD, 2047):
        low = math.ldexp(1.0, field - 1023)
        decade = int(np.searchsorted(least, low, side="right")) - 1 + POW10_MIN  # 10^decade <= 2^n
        for above in (0, 1):
            k = 16 - (decade + above)
            i = k - POW10_MIN
            # where 10^k is a double (0 <= k <= 22), m * hi is exact and so is every decision: no margin
            margin = 0.0 if 0 <= k <= 22 else MARGIN
            out[field, above] = (decade, least[decade + 1 - POW10_MIN], math.ldexp(hi[i], int(f[i]) + field - 1075),
                                 math.ldexp(lo[i], int(f[i]) + field - 1075), margin)
    return out


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (the FMA instruction where the CPU has one, else libm's fma)."""
    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def _store8(typingctx, array, index, word):
    """Store the uint64 `word` at array[index:index + 8] (a uint8 array), unaligned, in the machine's byte order."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        target = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
        builder.store(args[2], target, align=1)
        return context.get_dummy_value()
    return types.void(array, types.intp, types.uint64), codegen


@intrinsic
def _load8(typingctx, array, index):
    """The uint64 at array[index:index + 8] (a uint8 array), unaligned, in the machine's byte order."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        source = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(source, align=1)
    return types.uint64(array, types.intp), codegen


@inline
def _eight(out, p, v):
    """The 8 digits of v (< 10^8, uint64) at out[p:p + 8], as one store (P. Khuong's SWAR encode_ten_thousands:
    the two 4-digit halves in 32-bit lanes, divided by 100 and then by 10 in every lane at once)."""
    hi4 = v // np.uint64(10_000)
    merged = hi4 | ((v - hi4 * np.uint64(10_000)) << np.uint64(32))
    top = ((merged * np.uint64(10486)) >> np.uint64(20)) & np.uint64(0x0000007F0000007F)
    bottom = merged - np.uint64(100) * top
    hundreds = (bottom << np.uint64(16)) + top
    tens = ((hundreds * np.uint64(103)) >> np.uint64(10)) & np.uint64(0x000F000F000F000F)
    tens += (hundreds - np.uint64(10) * tens) << np.uint64(8)
    _store8(out, p, tens + np.uint64(0x3030303030303030))


@inline
def _digits(out, p, n, precision):
    """The `precision` (15 or 17) digits of n (uint64) at out[p:p + precision]; for 15, out[p - 1] is overwritten."""
    if precision == 17:
        first = n // np.uint64(10 ** 16)
        upper = n // np.uint64(10 ** 8)  # both divisions from n, side by side rather than one after the other
        _eight(out, p + 1, upper - first * np.uint64(10 ** 8))
        _eight(out, p + 9, n - upper * np.uint64(10 ** 8))
        out[p] = np.uint8(48 + np.int64(first))
    else:
        a = n // np.uint64(10 ** 8)  # 7 digits, written as 8 from p - 1
        _eight(out, p - 1, a)
        _eight(out, p + 7, n - a * np.uint64(10 ** 8))


@inline
def _significant(out, start, precision):
    """How many of the digits at out[start:start + precision] remain without trailing zeros (at least 1)."""
    # the last 8 digits as one word, '0' bytes made zero: its leading zero bytes (little-endian: the last
    # digits) are the trailing zeros, counted without a branch per digit (their count is data, unpredictable)
    last = _load8(out, start + precision - 8) ^ np.uint64(0x3030303030303030)
    if last != 0:
        return precision - np.int64(leading_zeros(last)) // 8
    count = precision - 8
    while count > 1 and out[start + count - 1] == 48:
        count -= 1
    return count


@inline
def _write_g(out, pos, digits, exponent, precision):
    """printf's %.<precision>g of digits * 10^(exponent - precision + 1), digits (uint64) of `precision` digits."""
    if -4 <= exponent < precision:
        if exponent >= 0:  # d...d[.d...d]: the digits one place right, then the integer part moved left over the gap
            _digits(out, pos + 1, digits, precision)
            whole = exponent + 1
            for j in range(whole):
                out[pos + j] = out[pos + 1 + j]
            count = _significant(out, pos + 1, precision)
            if count <= whole:
                return pos + whole
            out[pos + whole] = 46
            return pos + 1 + count
        lead = 1 - exponent  # 0.0...0d...d: "0.000000" as one store, then the digits over its tail
        _store8(out, pos, np.uint64(0x3030303030302E30))
        _digits(out, pos + lead, digits, precision)
        out[pos + 1] = 46  # for 15 digits, _digits wrote a '0' over the byte before them
        return pos + lead + _significant(out, pos + lead, precision)
    _digits(out, pos + 1, digits, precision)  # d[.d...d]e+XX
    out[pos] = out[pos + 1]
    count = _significant(out, pos + 1, precision)
    if count > 1:
        out[pos + 1] = 46
        pos += 1 + count
    else:
        pos += 1
    out[pos] = 101
    if exponent < 0:
        out[pos + 1] = 45
        exponent = -exponent
    else:
        out[pos + 1] = 43
    if exponent >= 100:
        out[pos + 2] = np.uint8(48 + exponent // 100)
        pos += 1
        exponent %= 100
    out[pos + 2] = DIGIT_PAIRS[2 * exponent]
    out[pos + 3] = DIGIT_PAIRS[2 * exponent + 1]
    return pos + 4


@inline
def spell(value, bits, out, pos, table):
    """Write CAST(value AS STRING) at out[pos:] and return the end, or -1 where the reference must spell it."""
    field = np.int64((bits >> np.uint64(52)) & np.uint64(0x7FF))
    fraction = bits & np.uint64(0xFFFFFFFFFFFFF)
    if field == 0x7FF:
        if fraction != 0:
            out[pos] = 110
            out[pos + 1] = 97
            out[pos + 2] = 110
            return pos + 3
        if value < 0:
            out[pos] = 45
            pos += 1
        out[pos] = 105
        out[pos + 1] = 110
        out[pos + 2] = 102
        return pos + 3
    out[pos] = 45  # kept only when negative (a coin flip on real data: no branch); else written over
    pos += np.int64(bits >> np.uint64(63))
    if field < MIN_EXPONENT_FIELD:
        if field == 0 and fraction == 0:
            out[pos] = 48
            return pos + 1
        return -1
    x = abs(value)
    if 1e17 <= x < 18446744073709551616.0:
        return _spell_integer(out, pos, fraction | np.uint64(1 << 52), field - 1075)
    above = 1 if x >= table[field, 0, 1] else 0
    exponent = np.int64(table[field, 0, 0]) + above  # 10^exponent <= x < 10^(exponent + 1)
    hi = table[field, above, 2]
    lo = table[field, above, 3]
    margin = table[field, above, 4]
    # s = x * 10^(16 - exponent) in [10^16, 10^17) is m * (hi + lo) = sh + sl, sh an integer (>= 2^53)
    mf = float(fraction | np.uint64(1 << 52))
    sh = mf * hi
    sl = _fma(mf, hi, -sh) + mf * lo
    floor_sl = math.floor(sl)
    whole = np.uint64(sh) + np.uint64(np.int64(floor_sl))  # wraps correctly when floor_sl < 0
    part = sl - floor_sl  # s = whole + part, part in [0, 1)
    # %.15g: s / 100 rounded (a tie to even); does it read back as x (a tie to the even mantissa)?
    # (the choices as arithmetic, not branches: for full-precision data they are coin flips)
    q = whole // np.uint64(100)
    rest = float(np.int64(whole - q * np.uint64(100))) + part - 50.0
    if abs(rest) < margin:
        return -1
    up = np.uint64(rest > 0) | (np.uint64(rest == 0) & q)
    up &= np.uint64(1)
    n15 = q + up
    below = 1.0 - 2.0 * float(up)  # -1: the 15-digit decimal is above x, 1: below it
    distance = 50.0 + below * rest  # how far, in units of s
    # half an ulp of x in units of s; below a power of two the next double is half as far
    gap = hi * (0.5 - 0.125 * (below + 1.0) * float(np.int64(fraction == 0)))
    over = distance - gap
    if abs(over) < margin:
        return -1
    if over < 0 or (over == 0 and (fraction & np.uint64(1)) == 0):
        if n15 == np.uint64(1_000_000_000_000_000):
            return _write_g(out, pos, np.uint64(100_000_000_000_000), exponent + 1, 15)
        return _write_g(out, pos, n15, exponent, 15)
    # %.17g: s rounded (a tie to even)
    half = part - 0.5
    if abs(half) < margin:
        return -1
    n17 = whole + ((np.uint64(half > 0) | (np.uint64(half == 0) & whole)) & np.uint64(1))
    if n17 == np.uint64(100_000_000_000_000_000):
        return _write_g(out, pos, np.uint64(10_000_000_000_000_000), exponent + 1, 17)
    return _write_g(out, pos, n17, exponent, 17)


@jit
def _spell_integer(out, pos, m, e2):
    """The spelling of m * 2^e2 in [10^17, 2^64) (an integer), in exact uint64 arithmetic."""
    x = m << np.uint64(e2)
    exponent = 17
    power = np.uint64(10)  # 10^(exponent - 16)
    while exponent < 19 and x >= power * np.uint64(10 ** 17):
        exponent += 1
        power *= np.uint64(10)
    # %.15g: x / (100 power) rounded, tie to even; does it read back (within half an ulp, tie to even m)?
    unit = power * np.uint64(100)
    q = x // unit
    r = x - q * unit
    half_unit = unit // np.uint64(2)
    up = r > half_unit or (r == half_unit and (q & np.uint64(1)) != 0)
    n15 = q + np.uint64(1) if up else q
    distance = unit - r if up else r
    gap = np.uint64(1) << np.uint64(e2 - 1)
    if not up and m == np.uint64(1 << 52):
        gap >>= np.uint64(1)
    if distance < gap or (distance == gap and (m & np.uint64(1)) == 0):
        if n15 == np.uint64(1_000_000_000_000_000):
            return _write_g(out, pos, np.uint64(100_000_000_000_000), exponent + 1, 15)
        return _write_g(out, pos, n15, exponent, 15)
    q = x // power
    r = x - q * power
    half_power = power // np.uint64(2)
    n17 = q + np.uint64(1) if r > half_power or (r == half_power and (q & np.uint64(1)) != 0) else q
    if n17 == np.uint64(100_000_000_000_000_000):
        return _write_g(out, pos, np.uint64(10_000_000_000_000_000), exponent + 1, 17)
    return _write_g(out, pos, n17, exponent, 17)


@jit
def spell_many(values, bits, valid, data, offsets, deferred, table):
    """Spell every value into data/offsets (an Arrow string array); a null or deferred value spells ''.

    Returns the count of deferred values (flagged in `deferred`), which the caller spells itself.
    """
    pos = 0
    count = 0
    offsets[0] = 0
    for i in range(values.shape[0]):
        if valid[i]:
            end = spell(values[i], bits[i], data, pos, table)
            if end < 0:
                deferred[i] = 1
                count += 1
            else:
                pos = end
        offsets[i + 1] = pos
    return count


@jit
def row_fingerprints(kinds, index, values, bits, value_valid, text, text_offsets, text_valid,
                     scratch, out, deferred, table, start, stop):
    """FarmHash Fingerprint64 of each row's key: its columns spelled and joined with U+001F.

    Column j of the key is values[:, index[j]] (FLOAT64, spelled here) when kinds[j] == 0, else the
    string column text_offsets[:, index[j]] into `text`; a null spells ''. Row-major, so a row's
    values are adjacent: read column-major, each of 14 float columns was its own memory stream. Rows with a value the
    reference must spell are flagged in `deferred` (their fingerprint is left unset); returns their count.
    Only rows start to stop: threads share the work, each with its own scratch.
    """
    count = 0
    columns = kinds.shape[0]
    for i in range(start, stop):
        pos = 0
        ok = True
        for j in range(columns):
            if j > 0:
                scratch[pos] = SEPARATOR
                pos += 1
            c = index[j]
            if kinds[j] == 0:
                if value_valid[i, c]:
                    end = spell(values[i, c], bits[i, c], scratch, pos, table)
                    if end < 0:
                        ok = False
                        break
                    pos = end
            elif text_valid[i, c]:
                start = text_offsets[i, c]
                stop = text_offsets[i + 1, c]
                for b in range(start, stop):
                    scratch[pos] = text[b]
                    pos += 1
        if ok:
            out[i] = hash64(scratch, 0, pos)
        else:
            deferred[i] = 1
            count += 1
    return count
