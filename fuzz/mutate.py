"""A small seeded byte mutator (the engine used when atheris is not installed).

Mutations are the usual dumb-fuzzer set, chosen at random and stacked one to
four deep: flip a bit, set a byte to an "interesting" value (0, 0xff, 0x7f,
0x80), write a 32-bit big- or little-endian interesting integer (0, 1, 2**31-1,
2**32-1, ...) at a random offset (header sizes live in such fields), delete,
duplicate or insert a block, truncate, or splice in a block of another seed.
Everything is driven by one ``numpy.random.Generator``, so a run is
reproducible from its seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mutate"]

_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)
_INTS = (0, 1, 2, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 10**6, 10**9)


def _one(data: bytearray, seeds: list[bytes], rng: np.random.Generator) -> bytearray:
    n = len(data)
    op = int(rng.integers(9))
    if n == 0:
        return bytearray(rng.bytes(int(rng.integers(1, 16))))
    i = int(rng.integers(n))
    if op == 0:  # flip one bit
        data[i] ^= 1 << int(rng.integers(8))
    elif op == 1:  # an interesting byte
        data[i] = _BYTES[int(rng.integers(len(_BYTES)))]
    elif op == 2:  # an interesting 32-bit integer, either byte order
        v = _INTS[int(rng.integers(len(_INTS)))]
        order = "big" if rng.integers(2) else "little"
        data[i : i + 4] = v.to_bytes(4, order)
    elif op == 3:  # random bytes over a short run
        k = int(rng.integers(1, 9))
        data[i : i + k] = rng.bytes(k)
    elif op == 4:  # delete a block
        del data[i : i + int(rng.integers(1, max(2, n // 4)))]
    elif op == 5:  # duplicate a block
        k = int(rng.integers(1, max(2, min(n - i, 256))))
        data[i:i] = data[i : i + k]
    elif op == 6:  # truncate
        del data[i:]
    elif op == 7:  # insert random bytes
        data[i:i] = rng.bytes(int(rng.integers(1, 17)))
    else:  # splice a block of another seed
        other = seeds[int(rng.integers(len(seeds)))]
        if other:
            j = int(rng.integers(len(other)))
            data[i:] = other[j : j + int(rng.integers(1, 512))] + data[i:]
    return data


def mutate(seed: bytes, seeds: list[bytes], rng: np.random.Generator) -> bytes:
    """One mutant of ``seed``: one to four stacked mutations.

    Example
    -------
    >>> import numpy as np
    >>> out = mutate(b"abcdef", [b"xyz"], np.random.default_rng(0))
    >>> isinstance(out, bytes)
    True
    """
    data = bytearray(seed)
    for _ in range(int(rng.integers(1, 5))):
        data = _one(data, seeds, rng)
    return bytes(data)
