"""``benchmarks.run`` rewrites BENCHMARKS.md on a full run: the sections it does not
generate (runs recorded by hand or by other scripts) must survive it."""

from __future__ import annotations

from benchmarks.run import with_kept_sections

OLD = """# Benchmarks

- date: old

## Training throughput (images/s)

| old | table |

## Sound and text: full training runs

recorded by hand

## Segmentation: `unet` on generated shapes (recorded by hand)

| seg | 0.835 |

## Scaling

old plot
"""

NEW = """# Benchmarks

- date: new

## Training throughput (images/s)

| new | table |

## Scaling

new plot
"""


def test_a_full_run_keeps_the_sections_it_does_not_write():
    md = with_kept_sections(NEW, OLD)
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads == [
        "## Training throughput (images/s)",
        "## Sound and text: full training runs",
        "## Segmentation: `unet` on generated shapes (recorded by hand)",
        "## Scaling",
    ]
    assert "| new | table |" in md and "| old | table |" not in md  # regenerated ones replaced
    assert "recorded by hand" in md and "| seg | 0.835 |" in md and "new plot" in md
    assert "old plot" not in md


def test_nothing_to_keep_leaves_the_new_file_alone():
    assert with_kept_sections(NEW, "# Benchmarks\n\n## Scaling\n\nold\n") == NEW
    assert with_kept_sections(NEW, "") == NEW
