"""The features the Btune plugin computes for a chunk at inference time.

A model predicts well inside the plugin only if trained on features with the plugin's exact
definitions, which are (Blosc2-Btune 1.2.1 ``entropy_probe.c``, ``btune_model.cpp``; C-Blosc2
``blosc_c()``):

* Blocks: the chunk's ``blocksize``, clamped to the chunk and rounded down to a multiple of
  ``typesize``; the last block holds the leftover. No filter, no split.
* A block whose bytes are all equal is a *run*: C-Blosc2 flags it before calling the codec and
  the plugin skips it in both sums, but still divides by the number of blocks (it counts 0).
* Other blocks: a blosclz-like match finder (4-byte hash into 2**13 slots, minimum match 3)
  over at most the first 8 KiB gives ``e = bytes consumed / bytes emitted``
  (:func:`probe_estimate`); the codec reports ``cbytes = min(int(n / e), n)`` and C-Blosc2
  records ``n / (cbytes + 4)`` (:func:`block_cratio`).
* ``cratio`` = float32 sum of the block ratios / number of blocks.
* ``speed`` = sum over blocks of ``n / t`` / :func:`zeros_speed`, / number of blocks, with
  ``t`` the time of the block's run check + probe.

Unavoidable differences (the ``cratio`` feature has none: it is bit-identical to the C code's):

* Each block's run check + probe is timed inside the compiled code with
  ``clock_gettime(CLOCK_MONOTONIC)``, the clock C-Blosc2 times it with; the filter time is 0
  (in C, two clock reads). The plugin runs blocks on 4 threads, we run them in order.
* The plugin times one all-zeros compression (default parameters, 4 threads starting inside
  the timed call) once per process, for the first chunk's size. One such call varies a lot
  and depends on what the process did before; we keep the median of 7 calls on fresh
  contexts, kept alive so that none reuses another's thread stacks, once per chunk size.
* Where the plugin gets no usable features we raise :class:`~btune_wrap.errors.InputError`: a
  non-run leftover block of at most 12 bytes (the C probe fails) and chunks with fewer than 24
  bytes per block (the instrumentation does not fit and raw chunk bytes are read as features).
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .errors import InputError, invalid
from .parse import parse_int

#: The smallest chunk (bytes) the plugin runs inference on: C-Blosc2's ``BLOSC_MIN_BUFFERSIZE``.
MIN_CHUNK_NBYTES: int = 32
#: Bytes of a block the probe looks at: the size of its hash table, ``1 << 13``.
PROBE_WINDOW: int = 8192
#: Largest chunk C-Blosc2 compresses: ``BLOSC2_MAX_BUFFERSIZE`` = INT32_MAX - 32.
MAX_CHUNK_NBYTES: int = 2**31 - 1 - 32
#: Typesizes above this are treated as 1 by C-Blosc2 (``BLOSC_MAX_TYPESIZE``).
MAX_TYPESIZE: int = 255
#: Bytes C-Blosc2 writes per instrumented block: a 4-byte size + a 16-byte ``blosc2_instr``.
#: With the 4-byte block start, a chunk of ``nbytes`` must have ``24 * nblocks <= nbytes``.
INSTR_BYTES_PER_BLOCK: int = 24
#: Calls of the zeros compression whose median gives :func:`zeros_speed`.
ZEROS_SPEED_REPEATS: int = 7

# Match finder constants (entropy_probe.c).
_HASH_LOG = 13
_MAX_COPY = 32
_MAX_DISTANCE = 8191
_MAX_FARDISTANCE = 65535 + _MAX_DISTANCE - 1
_MIN_LEN = 3
_IP_SHIFT = 3
# Result codes of the compiled block kernel besides a positive ratio.
_RUN = 0.0
_FAILED = -1.0


@dataclass(frozen=True)
class ProbeFeatures:
    """The plugin's inference-time features of one chunk, before normalization.

    Attributes
    ----------
    cratio : float
        Mean over blocks of the per-block estimated compression ratio (run blocks count 0).
    speed : float
        Mean over blocks of the probe's throughput divided by :func:`zeros_speed` (run blocks
        count 0).
    elapsed : float
        Wall seconds spent computing the features of this chunk (the probe, and the extended
        features when asked for; not the one-off :func:`zeros_speed` measurement).
    extra : tuple of float
        The extended features (:data:`EXTRA_FEATURES`, in that order) when the probe was
        asked for them (``ChunkProbe(..., extra=True)``), else empty.
    """

    cratio: float
    speed: float
    elapsed: float
    extra: tuple[float, ...] = ()


# --------------------------------------------------------------------------------------------
# Compiled kernels. Indices are relative to ``buf``; a block is ``buf[start:start + n]``.
# Buffer reads are unchecked, unaligned native loads (little endian on x86, as the C code's
# ``*(uint32_t *)p``): every caller keeps them inside the block, as the C code does.


def _unchecked_load(bits: int):
    """An intrinsic ``load(buf, i)``: the ``bits``-bit unsigned integer at byte ``i`` of a uint8
    array, without bounds or wraparound checks."""
    rettype = {8: types.uint8, 32: types.uint32, 64: types.uint64}[bits]

    @intrinsic
    def load(typingctx, arr, idx):
        if not (
            isinstance(arr, types.Array)
            and arr.dtype == types.uint8
            and isinstance(idx, types.Integer)
        ):
            return None

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(bits).as_pointer())
            return builder.load(ptr, align=1)

        return rettype(arr, idx), codegen

    return load


_ld8 = _unchecked_load(8)
_ld32 = _unchecked_load(32)
_ld64 = _unchecked_load(64)


@intrinsic
def _clock_ns(typingctx, clock_id):
    """An intrinsic ``_clock_ns(clock_id)``: ``clock_gettime(clock_id)`` in nanoseconds (int64).

    Called by symbol name, so the compiled code stays cacheable; C-Blosc2 times blocks with
    the same call.
    """
    if not isinstance(clock_id, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        timespec = ir.LiteralStructType([i64, i64])  # time_t tv_sec; long tv_nsec (LP64)
        fnty = ir.FunctionType(i32, [i32, timespec.as_pointer()])
        fn = builder.module.globals.get("clock_gettime")
        if fn is None:
            fn = ir.Function(builder.module, fnty, "clock_gettime")
        ts = builder.alloca(timespec)
        builder.call(fn, [context.cast(builder, args[0], signature.args[0], types.int32), ts])
        zero = ir.Constant(i32, 0)
        sec = builder.load(builder.gep(ts, [zero, zero]))
        nsec = builder.load(builder.gep(ts, [zero, ir.Constant(i32, 1)]))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return types.int64(clock_id), codegen


def _atomic_int64(store: bool):
    """Intrinsics on element ``i`` of an int64 array: ``load(arr, i)`` with acquire ordering,
    ``store(arr, i, value)`` with release ordering, so that another thread that sees a count
    also sees everything written before it."""
    if store:

        @intrinsic
        def op(typingctx, arr, idx, value):
            if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
                return None

            def codegen(context, builder, signature, args):
                ary = context.make_array(signature.args[0])(context, builder, args[0])
                ptr = builder.gep(ary.data, [args[1]])
                val = context.cast(builder, args[2], signature.args[2], types.int64)
                builder.store_atomic(val, ptr, ordering="release", align=8)
                return context.get_dummy_value()

            return types.none(arr, idx, value), codegen

    else:

        @intrinsic
        def op(typingctx, arr, idx):
            if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
                return None

            def codegen(context, builder, signature, args):
                ary = context.make_array(signature.args[0])(context, builder, args[0])
                ptr = builder.gep(ary.data, [args[1]])
                return builder.load_atomic(ptr, ordering="acquire", align=8)

            return types.int64(arr, idx), codegen

    return op


_store_release = _atomic_int64(store=True)
_load_acquire = _atomic_int64(store=False)


@numba.njit(cache=True, nogil=True)
def _read_count(progress):  # pragma: no cover - compiled
    return _load_acquire(progress, 0)


@numba.njit(cache=True, nogil=True)
def _request_stop(progress):  # pragma: no cover - compiled
    _store_release(progress, 1, 1)


@numba.njit(cache=True)
def _is_run(buf, start, n):  # pragma: no cover - compiled
    """C-Blosc2's run check: do all ``n`` bytes equal the first one? (8 bytes at a time)."""
    x = _ld8(buf, start)
    value = np.uint64(x) * np.uint64(0x0101010101010101)
    ip = start
    bound = start + n
    while ip < bound - 8:
        if _ld64(buf, ip) != value:
            return False
        ip += 8
    while ip < bound and _ld8(buf, ip) == x:
        ip += 1
    return ip == bound


@numba.njit(cache=True)
def _estimate(buf, start, n, hash_log):  # pragma: no cover - compiled
    """Consumed / emitted bytes of the probe's match finder over the block's first 8 KiB, with
    a hash table of ``2**hash_log`` entries (the plugin's: :data:`_HASH_LOG`)."""
    limit = min(n, 1 << _HASH_LOG)
    ip_bound = start + limit - 1
    ip_limit = start + limit - 12
    htab = np.zeros(1 << hash_log, dtype=np.uint32)  # offsets from start; 0 = unset
    mult = np.uint32(2654435761)
    shift = np.uint32(32 - hash_log)
    oc = 5  # output bytes so far: the probe starts with a literal run of 4 bytes
    copy = 4  # literals in the current literal run
    ip = start
    while ip < ip_limit:
        anchor = ip
        hval = np.intp(np.uint32(_ld32(buf, ip) * mult) >> shift)
        ref = start + np.intp(htab[hval])
        distance = anchor - ref
        htab[hval] = np.uint32(anchor - start)
        literal = distance == 0 or distance >= _MAX_FARDISTANCE
        if not literal:
            literal = _ld32(buf, ref) != _ld32(buf, ip)
        if not literal:
            ref += 4
            ip = anchor + 4
            distance -= 1
            if distance == 0:
                # A run of the byte before ip; ref trails ip by one.
                x = _ld8(buf, ip - 1)
                value = np.uint64(x) * np.uint64(0x0101010101010101)
                done = False
                while ip < ip_bound - 8:
                    if _ld64(buf, ref) != value:
                        while _ld8(buf, ref) == x:
                            ref += 1
                            ip += 1
                        done = True
                        break
                    ip += 8
                    ref += 8
                if not done:
                    while ip < ip_bound and _ld8(buf, ref) == x:
                        ref += 1
                        ip += 1
            else:
                # A match: ip ends one past the first differing byte (or at ip_bound).
                done = False
                while ip < ip_bound - 8:
                    if _ld64(buf, ref) != _ld64(buf, ip):
                        while True:
                            same = _ld8(buf, ref) == _ld8(buf, ip)
                            ref += 1
                            ip += 1
                            if not same:
                                break
                        done = True
                        break
                    ip += 8
                    ref += 8
                if not done:
                    while ip < ip_bound:
                        same = _ld8(buf, ref) == _ld8(buf, ip)
                        ref += 1
                        ip += 1
                        if not same:
                            break
            ip -= _IP_SHIFT
            length = ip - anchor
            if length < _MIN_LEN:
                literal = True
            else:
                if copy == 0:
                    oc -= 1
                copy = 0
                if length >= 7:
                    oc += (length - 7) // 255 + 1
                oc += 2 if distance < _MAX_DISTANCE else 4
                hval = np.intp(np.uint32(_ld32(buf, ip) * mult) >> shift)
                htab[hval] = np.uint32(ip - start)
                ip += 2
                oc += 1
        if literal:
            oc += 1
            anchor += 1
            ip = anchor
            copy += 1
            if copy == _MAX_COPY:
                copy = 0
                oc += 1
    return np.float32(ip - start) / np.float32(oc)


@numba.njit(cache=True)
def _block_kernel(buf, start, n):  # pragma: no cover - compiled
    """What the instrumented C-Blosc2 records for one block, as one float32.

    Returns the block's ratio ``n / (cbytes + 4)`` (> 0), ``0.0`` for a run block (flagged,
    skipped by the plugin), or ``-1.0`` when the probe cannot handle the block.
    """
    if _is_run(buf, start, n):
        return np.float32(_RUN)
    est = _estimate(buf, start, n, _HASH_LOG)
    if est <= np.float32(0.0):
        return np.float32(_FAILED)
    cbytes = int(np.float32(n) / est)
    if cbytes > n:
        cbytes = n
    if cbytes == 0:
        cbytes = n
    return np.float32(n) / np.float32(cbytes + 4)


@numba.njit(cache=True)
def _reduce(ratios, times, bs, nbytes, zeros_speed):  # pragma: no cover - compiled
    """The chunk's features from its blocks' ratios and probe times (ns), as the plugin does.

    Per block: ``cspeed = n / ctime``, ``rel = 1 / (1 / cspeed + ftime) / zeros_speed`` with
    ``ftime = 0`` (no filter); run blocks (ratio 0) are skipped in both sums; the float32 sums
    are divided by the number of blocks.
    """
    zs = np.float32(zeros_speed)
    nblocks = ratios.size
    cratio = np.float32(0.0)
    rel = np.float32(0.0)
    for j in range(nblocks):
        if ratios[j] != np.float32(_RUN):
            n = np.float32(min(bs, nbytes - j * bs))
            ctime = np.float32(max(times[j], 1) * 1e-9)
            cspeed = n / ctime
            cratio += ratios[j]
            rel += np.float32(1.0) / (np.float32(1.0) / cspeed) / zs
    return cratio / np.float32(nblocks), rel / np.float32(nblocks)


#: The extended features (Python engine only; named in :mod:`btune_wrap.features`), in the
#: order :func:`_extra_features` writes them.
EXTRA_FEATURES: tuple[str, ...] = (
    "shuffle_cratio",
    "bitshuffle_cratio",
    "bytedelta_cratio",
    "zero_share",
    "low_entropy",
    "high_entropy",
)
#: Bytes of each window the extended features look at.
EXTRA_WINDOW: int = 1024
#: Windows per chunk, spread evenly over it (the first at its start), whatever its blocks.
#: Measured on the real-data corpus (2026-11-27, per-array models): 2 windows of 1 KB against
#: one of 2 KB at the chunk's start took the DECOMP gain from 8.7% to 7.4% (COMP 5.8% -> 5.6%)
#: -- a chunk of network weights ending in zeros looked like the others from its start -- and
#: with :data:`EXTRA_HASH_LOG` cost 40% less.
EXTRA_WINDOWS: int = 2
#: Hash table size (log2) of the extended features' estimates: 1024 entries for 1 KB windows
#: (the plugin's 8192 took most of their time in clearing the table; same gains measured).
EXTRA_HASH_LOG: int = 10
#: Layout of the extended features, recorded by gathers and extended models; features of
#: another layout are not comparable (a gather of another one is read as having none).
EXTRA_LAYOUT: str = f"{EXTRA_WINDOWS}x{EXTRA_WINDOW}/h{EXTRA_HASH_LOG}"


@numba.njit(cache=True)
def _shuffle(row, start, nelem, ts, out):  # pragma: no cover - compiled
    """Byte shuffle of ``nelem`` items of ``ts`` bytes at ``row[start:]``: lane ``b`` of item
    ``e`` goes to ``out[b * nelem + e]`` (C-Blosc2's shuffle)."""
    for e in range(nelem):
        base = start + e * ts
        for b in range(ts):
            out[b * nelem + e] = row[base + b]


@numba.njit(cache=True)
def _bytedelta(src, nelem, ts, out):  # pragma: no cover - compiled
    """C-Blosc2's bytedelta of a shuffled buffer: each lane's bytes minus the previous one."""
    for b in range(ts):
        base = b * nelem
        prev = np.uint8(0)
        for e in range(nelem):
            x = src[base + e]
            out[base + e] = np.uint8(x - prev)
            prev = x


@numba.njit(cache=True)
def _bitshuffle(src, nelem, ts, out):  # pragma: no cover - compiled
    """Bit planes of a shuffled buffer: for each lane, groups of 8 items' bytes transposed as
    8x8 bit matrices, bit ``j`` of the group's items going to plane ``j`` (the layout of
    C-Blosc2's bitshuffle up to the order of bits within a byte). ``nelem`` is a multiple of 8."""
    groups = nelem // 8
    for b in range(ts):
        base = b * nelem
        for g in range(groups):
            x = _ld64(src, base + 8 * g)
            t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
            x = x ^ t ^ (t << np.uint64(7))
            t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
            x = x ^ t ^ (t << np.uint64(14))
            t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
            x = x ^ t ^ (t << np.uint64(28))
            for j in range(8):
                out[(b * 8 + j) * groups + g] = np.uint8((x >> np.uint64(8 * j)) & np.uint64(255))


#: ``c * log2(c)`` for the counts of one sample's histogram (a table: 512 logarithms cost
#: about as much as the three filter probes together).
_CLOG2C = np.array([0.0] + [c * math.log2(c) for c in range(1, EXTRA_WINDOW * EXTRA_WINDOWS + 1)])


@numba.njit(cache=True)
def _entropy(hist, total):  # pragma: no cover - compiled
    """Shannon entropy (bits per byte, 0 to 8) of a 256-bin byte histogram of ``total``
    counts: ``log2(total) - sum(c log2 c) / total``."""
    table = _CLOG2C
    s = 0.0
    for v in range(256):
        c = hist[v]
        if c < table.size:
            s += table[c]
        else:
            s += c * math.log2(c)
    return max(math.log2(total) - s / total, 0.0)


@numba.njit(cache=True)
def _extra_features(
    row, ts, scratch, hist, out, window=EXTRA_WINDOW, nwindows=EXTRA_WINDOWS
):  # pragma: no cover - compiled
    """The extended features of one chunk (``row``) into ``out``.

    From ``nwindows`` windows of ``window`` bytes spread evenly over the chunk, each starting
    on a whole group of 8 items (whole items of ``ts`` bytes, a multiple of 8 of them): the
    probe's estimate (:func:`_estimate`, consumed / emitted bytes, a table of
    :data:`EXTRA_HASH_LOG`) after byte shuffle, after bitshuffle and after shuffle + bytedelta,
    each the mean over the windows; the share of zero bytes; the entropy (bits) of the items'
    lowest and highest bytes (little endian). Samples shorter than 8 items give the plain
    estimate for all three and the statistics of what there is.
    """
    nbytes = row.size
    group = 8 * ts
    step = max(nbytes // nwindows // group * group, group)  # between window starts
    nsteps = (nbytes + step - 1) // step
    nsample = min(nsteps, nwindows)
    hist[:] = 0
    e_shuf = 0.0
    e_bit = 0.0
    e_delta = 0.0
    zeros = 0
    seen = 0
    items = 0
    shuffled, other = scratch[0], scratch[1]
    for k in range(nsample):
        start = k * nsteps // nsample * step
        n = min(step, nbytes - start, window)
        nelem = n // ts // 8 * 8
        if nelem == 0:
            est = _estimate(row, start, n, EXTRA_HASH_LOG) if n > 12 else np.float32(1.0)
            e_shuf += est
            e_bit += est
            e_delta += est
            for p in range(start, start + n):
                zeros += row[p] == 0
                hist[0, row[p]] += 1
                hist[1, row[p]] += 1
            seen += n
            items += n
            continue
        m = nelem * ts
        _shuffle(row, start, nelem, ts, shuffled)
        e_shuf += _estimate(shuffled, 0, m, EXTRA_HASH_LOG) if m > 12 else np.float32(1.0)
        _bitshuffle(shuffled, nelem, ts, other)
        e_bit += _estimate(other, 0, m, EXTRA_HASH_LOG) if m > 12 else np.float32(1.0)
        _bytedelta(shuffled, nelem, ts, other)
        e_delta += _estimate(other, 0, m, EXTRA_HASH_LOG) if m > 12 else np.float32(1.0)
        for p in range(m):
            zeros += shuffled[p] == 0
        hi = (ts - 1) * nelem
        for e in range(nelem):
            hist[0, shuffled[e]] += 1
            hist[1, shuffled[hi + e]] += 1
        seen += m
        items += nelem
    out[0] = e_shuf / nsample
    out[1] = e_bit / nsample
    out[2] = e_delta / nsample
    out[3] = zeros / max(seen, 1)
    out[4] = _entropy(hist[0], max(items, 1))
    out[5] = _entropy(hist[1], max(items, 1))


@numba.njit(cache=True, nogil=True)
def _probe_chunks(
    chunks, bs, zeros_speed, clock_id, typesize, cratio, speed, elapsed, progress, extra
):  # pragma: no cover - compiled
    """The features of each row of ``chunks`` (a 2-D uint8 array, one chunk's bytes per row).

    Fills ``cratio`` and ``speed`` (NaN both where the probe fails on a block) and ``elapsed``
    (ns from the first block's run check to the features). Blocks are ``bs`` bytes, the last
    one the leftover; each block's run check + probe is timed on its own. ``progress`` (int64,
    2 entries) is for another thread: entry 0 counts the chunks done (stored after their
    features), a non-zero entry 1 stops the loop before the next chunk. ``extra`` (float64,
    ``(n, len(EXTRA_FEATURES))`` or ``(n, 0)`` for none) receives the extended features
    (:func:`_extra_features`, items of ``typesize`` bytes), computed after the timed blocks and
    counted in ``elapsed``.
    """
    nchunks, nbytes = chunks.shape
    nblocks = (nbytes + bs - 1) // bs
    ratios = np.empty(nblocks, dtype=np.float32)
    times = np.empty(nblocks, dtype=np.int64)
    want_extra = extra.shape[1] > 0
    scratch = np.empty((3, PROBE_WINDOW + 64), dtype=np.uint8)
    hist = np.zeros((2, 256), dtype=np.int64)
    for i in range(nchunks):
        if _load_acquire(progress, 1) != 0:
            break
        row = chunks[i]
        t_start = _clock_ns(clock_id)
        failed = False
        for j in range(nblocks):
            start = j * bs
            n = min(bs, nbytes - start)
            t0 = _clock_ns(clock_id)
            ratio = _block_kernel(row, start, n)
            t1 = _clock_ns(clock_id)
            ratios[j] = ratio
            times[j] = t1 - t0
            failed |= ratio < np.float32(0.0)
        c, s = _reduce(ratios, times, bs, nbytes, zeros_speed)
        if want_extra:
            _extra_features(row, typesize, scratch, hist, extra[i])
        elapsed[i] = _clock_ns(clock_id) - t_start
        if failed:
            cratio[i] = np.nan
            speed[i] = np.nan
        else:
            cratio[i] = c
            speed[i] = s
        _store_release(progress, 0, i + 1)


_WARM = False
#: Chunk sizes whose zeros speed has been measured and whose probe has been warmed up.
_PRIMED: set[int] = set()
_PRIMING_PASSES = 3


def _warm_up() -> None:
    """Compile (or load from numba's cache) the kernels once, before anything is timed.

    Both writable and read-only buffers (``bytes`` gives read-only arrays) get their own
    compiled version: warm both.
    """
    global _WARM
    if not _WARM:
        dummy = np.zeros(64, dtype=np.uint8)
        dummy[-1] = 1
        frozen = dummy.copy()
        frozen.flags.writeable = False
        for buf in (dummy, frozen):
            ratio = _block_kernel(buf, 0, buf.size)
            _estimate(buf, 0, buf.size, _HASH_LOG)
            _probe_chunks(buf.reshape(1, -1), 64, 1.0, _CLOCK_ID, 8, *_outputs(1, True))
        progress = np.zeros(2, dtype=np.int64)
        _read_count(progress)
        _request_stop(progress)
        _reduce(np.full(1, ratio, dtype=np.float32), np.ones(1, dtype=np.int64), 64, 64, 1.0)
        _WARM = True


#: The clock blocks are timed with (``clock_gettime``'s id; POSIX only, -1 elsewhere).
_CLOCK_ID: int = getattr(time, "CLOCK_MONOTONIC", -1)


def _outputs(
    n: int, extra: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Output arrays of :func:`_probe_chunks` for ``n`` chunks: cratio, speed, elapsed (ns),
    progress, and the extended features (none unless ``extra``)."""
    return (
        np.empty(n),
        np.empty(n),
        np.empty(n, dtype=np.int64),
        np.zeros(2, dtype=np.int64),
        np.empty((n, len(EXTRA_FEATURES) if extra else 0)),
    )


# --------------------------------------------------------------------------------------------
# Public API


def _as_block(block: np.ndarray, name: str = "block") -> np.ndarray:
    if not isinstance(block, np.ndarray) or block.dtype != np.uint8 or block.ndim != 1:
        shape = getattr(block, "shape", None)
        dtype = getattr(block, "dtype", type(block).__name__)
        what = f"{type(block).__name__} of dtype {dtype} and shape {shape}"
        raise InputError(invalid(name, what, "a 1-D numpy array of uint8"))
    if block.size == 0:
        raise InputError(invalid(f"{name}.size", 0, "at least 1 byte"))
    return np.ascontiguousarray(block)


def probe_estimate(block: np.ndarray) -> float:
    """The probe's raw estimate for one block: bytes consumed / bytes a blosclz-like encoder
    would emit, over at most the block's first 8 KiB (``get_cratio`` in the plugin).

    Parameters
    ----------
    block : numpy.ndarray
        The block's bytes, 1-D uint8.

    Returns
    -------
    float
        The estimate (a float32 value); 0.0 for blocks of 12 bytes or fewer, where the match
        finder does not run.
    """
    buf = _as_block(block)
    return float(_estimate(buf, 0, buf.size, _HASH_LOG))


def block_cratio(block: np.ndarray) -> float:
    """The estimated compression ratio the plugin records for one block.

    This is ``n / (min(int(n / e), n) + 4)`` for a block of ``n`` bytes whose probe estimate
    is ``e`` (:func:`probe_estimate`, first 8 KiB only). A block whose bytes all have one value
    is a run: C-Blosc2 flags it before the probe and the plugin skips it, so it counts 0.0.
    The chunk's ``cratio`` feature is the mean of this over the chunk's blocks.

    Parameters
    ----------
    block : numpy.ndarray
        The block's bytes, 1-D uint8, as C-Blosc2 hands them to the codec (no filter).

    Returns
    -------
    float
        The ratio (a float32 value), > 0 for a block that is not a run, 0.0 for a run.

    Raises
    ------
    InputError
        If ``block`` is not a non-empty 1-D uint8 array, or is a block of at most 12 bytes that
        is not a run (the plugin's probe fails on it).
    """
    buf = _as_block(block)
    value = float(_block_kernel(buf, 0, buf.size))
    if value < 0:
        expected = "at least 13 bytes unless all bytes are equal (the probe fails otherwise)"
        raise InputError(invalid("block.size", buf.size, expected))
    return value


def _as_bytes(chunk: bytes | memoryview | np.ndarray) -> np.ndarray:
    try:
        view = memoryview(chunk)
    except TypeError:
        raise InputError(
            invalid("chunk", type(chunk).__name__, "bytes, a memoryview or a numpy array")
        ) from None
    if not view.c_contiguous:
        expected = "a C-contiguous buffer (the chunk's bytes as blosc2 hands them to codecs)"
        raise InputError(invalid("chunk", "a non-contiguous buffer", expected))
    if view.nbytes == 0:
        return np.empty(0, dtype=np.uint8)
    return np.frombuffer(view, dtype=np.uint8)


def effective_blocksize(nbytes: int, typesize: int, blocksize: int) -> int:
    """The blocksize C-Blosc2 uses when the probe compresses a chunk of ``nbytes``.

    C-Blosc2 treats a typesize above 255 as 1, clamps the blocksize to the chunk size and
    rounds it down to a multiple of the typesize; a chunk smaller than one item gets 1.

    Parameters
    ----------
    nbytes : int
        Size of the chunk in bytes.
    typesize : int
        Size of one item in bytes.
    blocksize : int
        The chunk's blocksize in bytes (``schunk.blocksize``), > 0.
    """
    ts = typesize if typesize <= MAX_TYPESIZE else 1
    if nbytes < ts:
        return 1
    bs = min(blocksize, nbytes)
    if bs > ts:
        bs = bs // ts * ts
    return bs


def chunk_features(
    chunk: bytes | memoryview | np.ndarray, typesize: int, blocksize: int, extra: bool = False
) -> ProbeFeatures:
    """Compute the plugin's inference-time features of one chunk.

    Parameters
    ----------
    chunk : bytes, memoryview or numpy.ndarray
        The chunk's uncompressed bytes exactly as blosc2 hands them to the codecs (block
        layout), C-contiguous; any dtype, read as bytes. At least :data:`MIN_CHUNK_NBYTES`.
    typesize : int
        Size of one item in bytes (``schunk.typesize``), >= 1.
    blocksize : int
        The chunk's blocksize in bytes (``schunk.blocksize``), >= 1. The automatic blocksize
        (0) is not accepted: pass the one blosc2 chose.
    extra : bool
        Also compute the extended features (:data:`EXTRA_FEATURES`). Default False.

    Returns
    -------
    ProbeFeatures
        The raw (not normalized) ``cratio`` and ``speed`` features and the probe's wall time.

    Raises
    ------
    InputError
        For a chunk that is not a contiguous buffer, is smaller than :data:`MIN_CHUNK_NBYTES`
        (the plugin skips inference) or larger than C-Blosc2 accepts, a non-positive
        ``typesize`` or ``blocksize``, and the two cases where the plugin gets no usable
        features (see the module documentation).
    """
    buf = _as_bytes(chunk)
    return ChunkProbe(int(buf.size), typesize, blocksize, extra)(buf)


def _probe_layout(nbytes: int, typesize: int, blocksize: int) -> tuple[int, int]:
    """``(blocksize, nblocks)`` the plugin's probe uses for a chunk, or :class:`InputError` for
    a layout it cannot probe."""
    if nbytes < MIN_CHUNK_NBYTES or nbytes > MAX_CHUNK_NBYTES:
        expected = (
            f"between {MIN_CHUNK_NBYTES} and {MAX_CHUNK_NBYTES} bytes "
            "(the plugin skips inference on smaller chunks)"
        )
        raise InputError(invalid("chunk nbytes", nbytes, expected))
    return check_block_room(nbytes, typesize, blocksize)


def check_block_room(nbytes: int, typesize: int, blocksize: int) -> tuple[int, int]:
    """``(blocksize, nblocks)`` the plugin's probe uses for a chunk of ``nbytes``, or
    :class:`InputError` where its blocks are too small for the plugin's instrumentation."""
    bs = effective_blocksize(nbytes, typesize, blocksize)
    nblocks = -(-nbytes // bs)
    if INSTR_BYTES_PER_BLOCK * nblocks > nbytes:
        expected = (
            f"at least {INSTR_BYTES_PER_BLOCK} bytes per block on average (got {nblocks} "
            f"blocks for {nbytes} bytes with typesize={typesize}): below that the plugin's "
            "instrumentation does not fit and it reads raw chunk bytes as features"
        )
        raise InputError(invalid("blocksize", blocksize, expected))
    return bs, nblocks


class ChunkProbe:
    """:func:`chunk_features` for many chunks of one layout, validated once.

    Parameters
    ----------
    nbytes : int
        Size of every chunk in bytes, between :data:`MIN_CHUNK_NBYTES` and
        :data:`MAX_CHUNK_NBYTES`.
    typesize : int
        Size of one item in bytes, >= 1.
    blocksize : int
        The chunks' blocksize in bytes (``schunk.blocksize``), >= 1.
    extra : bool
        Also compute the extended features (:data:`EXTRA_FEATURES`) of each chunk, in the same
        compiled pass, after the plugin's (whose timings they do not change). Default False.

    Calling the probe with a chunk (a C-contiguous 1-D uint8 array of ``nbytes`` bytes, not
    checked again) gives its :class:`ProbeFeatures`, exactly as :func:`chunk_features` would;
    :meth:`many` does the same for many chunks in one compiled call.

    Raises
    ------
    InputError
        On construction, for the layouts :func:`chunk_features` refuses; on a call, for a chunk
        whose leftover block the plugin's probe fails on.
    """

    def __init__(self, nbytes: int, typesize: int, blocksize: int, extra: bool = False) -> None:
        nbytes = parse_int("chunk nbytes", nbytes, 0, error=InputError)
        typesize = parse_int("typesize", typesize, 1, error=InputError)
        blocksize = parse_int("blocksize", blocksize, 1, error=InputError)
        bs, nblocks = _probe_layout(nbytes, typesize, blocksize)
        self.nbytes = nbytes
        self.typesize = typesize if typesize <= MAX_TYPESIZE else 1
        self.blocksize = bs
        self.nblocks = nblocks
        self.extra = bool(extra)
        self._zs: float | None = None
        self._one = _outputs(1, self.extra)  # the outputs of a call for one chunk, reused

    def __call__(self, buf: np.ndarray) -> ProbeFeatures:
        row = buf.reshape(1, -1)
        if self._zs is None:
            self._check(row)
        out = self._one
        _probe_chunks(row, self.blocksize, self._zs, _CLOCK_ID, self.typesize, *out)
        cratio = float(out[0][0])
        if math.isnan(cratio):
            bs, nblocks = self.blocksize, self.nblocks
            n_last = self.nbytes - (nblocks - 1) * bs
            expected = (
                f"a size whose leftover block is longer than 12 bytes or a run (blocksize={bs} "
                f"leaves {n_last} bytes that are not all equal: the plugin's probe fails on them)"
            )
            raise InputError(invalid("chunk nbytes", self.nbytes, expected))
        speed, elapsed = float(out[1][0]), float(out[2][0]) * 1e-9
        extra = tuple(float(v) for v in out[4][0])
        return ProbeFeatures(cratio=cratio, speed=speed, elapsed=elapsed, extra=extra)

    def many(self, chunks: np.ndarray) -> FeatureArrays:
        """The features of many chunks in one compiled call, each timed on its own.

        Parameters
        ----------
        chunks : numpy.ndarray
            C-contiguous uint8 of shape ``(n, nbytes)``: one chunk's bytes per row.

        Returns
        -------
        FeatureArrays
            One entry per chunk, equal to what calling the probe on each row gives; NaN
            ``cratio`` and ``speed`` for a chunk the probe fails on (where a call raises).
        """
        self._check(chunks)
        out = _outputs(chunks.shape[0], self.extra)
        _probe_chunks(chunks, self.blocksize, self._zs, _CLOCK_ID, self.typesize, *out)
        return FeatureArrays(out[0], out[1], out[2] * 1e-9, out[4])

    def start(self, chunks: np.ndarray) -> ProbeJob:
        """:meth:`many` in a background thread: the features come while the caller works.

        The compiled probe runs without the GIL, so on a machine with a core to spare the
        caller's own work (compressing chunks already probed, say) overlaps with it. Each
        block is still timed on its own; other work on the machine can slow it, as it can
        the plugin's probe.

        Parameters
        ----------
        chunks : numpy.ndarray
            As for :meth:`many`; it must not change until the job is closed.
        """
        self._check(chunks)
        return ProbeJob(chunks, self.blocksize, self._zs, self.typesize, self.extra)

    def _check(self, chunks: np.ndarray) -> None:
        if (
            not isinstance(chunks, np.ndarray)
            or chunks.dtype != np.uint8
            or chunks.ndim != 2
            or chunks.shape[1] != self.nbytes
            or not chunks.flags.c_contiguous
        ):
            what = f"{type(chunks).__name__} of dtype {getattr(chunks, 'dtype', None)} and shape "
            what += f"{getattr(chunks, 'shape', None)}"
            raise InputError(
                invalid("chunks", what, f"a C-contiguous uint8 array of shape (n, {self.nbytes})")
            )
        if self._zs is None:
            self._zs = _primed_zeros_speed(
                chunks[:1], self.nbytes, self.blocksize, self.typesize, self.extra
            )


def _primed_zeros_speed(
    first: np.ndarray, nbytes: int, blocksize: int, typesize: int, extra: bool
) -> float:
    """Compile, measure the zeros speed of ``nbytes`` and warm the probe up on this chunk size
    (with ``first``); return the zeros speed."""
    if _CLOCK_ID < 0:
        raise InputError(
            "the probe times blocks with clock_gettime(CLOCK_MONOTONIC), which this platform lacks"
        )
    _warm_up()
    primed = nbytes in _PRIMED
    zs = zeros_speed(nbytes)
    if not primed and first.shape[0]:
        # Right after the process's first probe or a zeros-speed measurement the first
        # few blocks run several times slower (cold caches, threads being torn down);
        # the plugin shows the same on its first chunk. Run untimed passes so they
        # don't skew features.
        for _ in range(_PRIMING_PASSES):
            _probe_chunks(first, blocksize, zs, _CLOCK_ID, typesize, *_outputs(1, extra))
        _PRIMED.add(nbytes)
    return zs


class ProbeJob:
    """The features of many chunks, computed in a background thread (:meth:`ChunkProbe.start`).

    :meth:`features` waits for the chunks it is asked for; :meth:`close` (or leaving a ``with``
    block) stops the thread after its current chunk and waits for it.
    """

    #: Seconds between two looks at the progress while waiting.
    POLL = 20e-6

    def __init__(
        self,
        chunks: np.ndarray,
        blocksize: int,
        zeros_speed: float,
        typesize: int = 1,
        extra: bool = False,
    ) -> None:
        self.total = int(chunks.shape[0])
        self._out = _outputs(self.total, extra)
        self._progress = self._out[3]
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(chunks, blocksize, zeros_speed, typesize), daemon=True
        )
        self._thread.start()

    def _run(self, chunks: np.ndarray, blocksize: int, zeros_speed: float, typesize: int) -> None:
        try:
            _probe_chunks(chunks, blocksize, zeros_speed, _CLOCK_ID, typesize, *self._out)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._error = exc

    def wait(self, count: int) -> int:
        """Wait until at least ``count`` chunks (at most :attr:`total`) are done; returns how
        many are."""
        count = min(count, self.total)
        progress = self._progress
        done = _read_count(progress)
        while done < count:
            if not self._thread.is_alive():
                done = _read_count(progress)
                if done >= count:
                    break
                raise RuntimeError(
                    f"the probe thread stopped after {done} of {self.total} chunks"
                ) from self._error
            time.sleep(self.POLL)
            done = _read_count(progress)
        return done

    def features(self, start: int, stop: int) -> FeatureArrays:
        """The features of chunks ``start`` to ``stop - 1``, once they are done."""
        self.wait(stop)
        cratio, speed, elapsed, _, extra = self._out
        return FeatureArrays(
            cratio[start:stop], speed[start:stop], elapsed[start:stop] * 1e-9, extra[start:stop]
        )

    def close(self) -> None:
        """Stop the thread after its current chunk and wait for it."""
        _request_stop(self._progress)
        self._thread.join()

    def __enter__(self) -> ProbeJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeatureArrays(NamedTuple):
    """The features of many chunks (:meth:`ChunkProbe.many`), one entry per chunk.

    ``cratio`` and ``speed`` are as in :class:`ProbeFeatures` (NaN where the probe fails),
    ``elapsed`` in seconds; ``extra`` has one row per chunk, one column per extended feature
    (:data:`EXTRA_FEATURES`; no columns unless the probe was asked for them).
    """

    cratio: np.ndarray
    speed: np.ndarray
    elapsed: np.ndarray
    extra: np.ndarray = np.empty((0, 0))


def zeros_speed(nbytes: int) -> float:
    """Throughput (bytes/s) of compressing an all-zeros buffer of ``nbytes`` bytes.

    The plugin's machine-relative speed reference: one compression with C-Blosc2's default
    parameters (blosclz, clevel 5, shuffle, typesize 8, automatic blocksize, forward-compatible
    split) and 4 threads, on a fresh context, timing the compression call only, so the start
    of the 4 threads is included. Measured on first use for each size and cached for the life
    of the process: the median of :data:`ZEROS_SPEED_REPEATS` such calls. Every context is
    kept alive until the end, so no call reuses the thread stacks of a previous one and the
    result does not depend on what the process did before.

    Parameters
    ----------
    nbytes : int
        Size of the buffer in bytes, at least :data:`MIN_CHUNK_NBYTES`.
    """
    return _zeros_speed(
        parse_int("nbytes", nbytes, MIN_CHUNK_NBYTES, MAX_CHUNK_NBYTES, error=InputError)
    )


@functools.cache
def _zeros_speed(nbytes: int) -> float:
    import blosc2

    from .runtime import implicit_tuner_off

    zeros = np.zeros(nbytes, dtype=np.uint8)

    def cparams(nthreads: int) -> blosc2.CParams:
        return blosc2.CParams(
            codec=blosc2.Codec.BLOSCLZ,
            clevel=5,
            typesize=8,
            nthreads=nthreads,
            blocksize=0,
            splitmode=blosc2.SplitMode.FORWARD_COMPAT_SPLIT,
            filters=[blosc2.Filter.NOFILTER] * 5 + [blosc2.Filter.SHUFFLE],
            filters_meta=[0] * 6,
        )

    # Warm python-blosc2's code path without starting any thread.
    with implicit_tuner_off():
        blosc2.SChunk(chunksize=nbytes, cparams=cparams(1)).append_data(zeros)
    clock = time.perf_counter_ns
    alive = []
    samples = []
    for _ in range(ZEROS_SPEED_REPEATS):
        # A fresh super-chunk has a fresh context: its threads start inside the timed call.
        with implicit_tuner_off():
            schunk = blosc2.SChunk(chunksize=nbytes, cparams=cparams(4))
        t0 = clock()
        schunk.append_data(zeros)
        t1 = clock()
        alive.append(schunk)
        samples.append(max(t1 - t0, 1))
    del alive
    return nbytes / (statistics.median(samples) * 1e-9)
