"""The engine's tuning constants, in one documented object.

Every number the engine's fast paths choose by lives here, with what it means
and what it bought when it was measured (a 2-core virtual machine, OpenBLAS,
float32 unless said). None of them changes a result: each picks between
ways of computing the same values (the tests run the engine over many
:class:`Tuning` values and compare with loop references).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """The engine's speed settings; an :class:`~clearconv.engine.Engine` holds one.

    Parameters
    ----------
    macs_per_value : int, default 16
        A multiply-add in a matrix product costs about this many times less
        than a value of elementwise work: the unit in which a product's work
        is counted against :attr:`min_parallel_work`.
    min_parallel_work : int, default 2**18
        Values (or multiply-adds over ``macs_per_value``) below which work
        stays in one thread: handing a slice to another thread costs tens of
        microseconds (20-50 us a hand-over here).
    block_bytes : int, default 4 MiB
        Bytes of gathered convolution fields per block of samples, sized to
        stay in a core's L2/L3 cache between the copy that writes them and
        the product that reads them. LeNet-5 training at batch 128, two
        threads, for 512 KiB / 1 / 2 / 4 MiB: 12.1 / 9.24 / 8.49 / 8.19 ms.
    per_sample_dw_max : int, default 2048
        Largest ``K x O`` convolution weight gradient made as one product per
        sample, summed, rather than one product per block: OpenBLAS runs a
        ``(K, M) @ (M, O)`` product with tiny ``K x O`` and very long ``M`` at
        a fraction of its speed. Batch 64, two threads: Conv2d(1, 6, 5) dW
        0.92 -> 0.44 ms, Conv2d(1, 32, 3) 1.03 -> 0.44, Conv2d(3, 32, 3) on
        32x32 1.31 -> 1.01, Conv2d(8, 16, 3) 1.84 -> 1.40; neutral at 3 -> 64
        channels (K x O = 1,792), slower for LeNet-5's Conv2d(6, 16, 5)
        (2,416: 1.11 against 1.17 ms at batch 128).
    channels_last_min : int, default 32
        Output channels from which a convolution writes its result
        channels-last (positions x channels). With fewer, the elementwise
        loops of the layers after it (pooling, the gradient scatter) would
        run over runs of only a few channels; channel-major rows of
        ``OH*OW`` values are longer. The input gradient is made channels-last
        from as many input channels.
    per_sample_inner_max : int, default 256
        Inner dimension up to which a block's product is made as one product
        per sample (a batched matmul) rather than one tall product: OpenBLAS
        runs products with a short inner dimension and a long outer one well
        below its speed. One thread, 16 samples: LeNet-5's first layer, (6,
        26) @ (26, 12544), 0.118 -> 0.054 ms; (12544, 10) @ (10, 32) 0.166 ->
        0.100; LeNet-5's second layer (151 inner) 0.120 -> 0.095, its input
        gradient (16 inner) 0.217 -> 0.182. Inner 289 and 577 (3x3 layers of
        32 and 64 channels): within +-8% either way, left as one product.
    taps_max : int, default 16
        Most taps a tiling max-pooling window (stride = kernel, no padding)
        may have to be reduced tap by tap, one pass a tap, rather than
        separably (``kH + kW`` passes). 64 maps of 24x24, forward + backward
        against the separable form: 2x2 365 against 562 us (6 channels,
        channel-major) and 1,267 against 1,942 (32, channels-last); 3x3 467 /
        610 and 1,479 / 1,793; 4x4 624 / 633 and 1,468 / 1,700.
    zero_row_max : int, default 2**16
        Longest row of zeros ReLU compares against, broadcast down the rows
        of its input: NumPy's ``maximum`` has a SIMD loop for two array
        operands but not for a scalar (401,408 values: 0.041 against 0.149
        ms).
    workspace_max_bytes : int, default 64 MiB
        Largest scratch buffer the :class:`~clearconv.engine.memory.Workspace`
        keeps between calls; larger ones are made for the call and dropped,
        so one huge batch does not pin its memory.
    kept_min_bytes : int, default 128 KiB
        Results smaller than this are left to the C allocator, which reuses
        small blocks well (:class:`~clearconv.engine.memory.ResultPool`).
    kept_max_bytes : int, default 256 MiB
        Memory the :class:`~clearconv.engine.memory.ResultPool` keeps for
        later results, in all, at most.

    Raises
    ------
    ValueError
        If a setting is not an int >= 0.

    Examples
    --------
    >>> Tuning().block_bytes == 1 << 22
    True
    >>> Tuning(channels_last_min=1).channels_last_min
    1
    """

    macs_per_value: int = 16
    min_parallel_work: int = 1 << 18
    block_bytes: int = 1 << 22
    per_sample_dw_max: int = 2048
    channels_last_min: int = 32
    per_sample_inner_max: int = 256
    taps_max: int = 16
    zero_row_max: int = 1 << 16
    workspace_max_bytes: int = 64 << 20
    kept_min_bytes: int = 1 << 17
    kept_max_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Tuning: {name} must be an int >= 0, got {value!r}")
