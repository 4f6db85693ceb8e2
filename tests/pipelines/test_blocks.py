"""Input block sizing: whole batches of the first step, about four blocks per CPU."""

import pytest

from mmbatch.pipelines.executor import BLOCKS_PER_CPU, task_rows


@pytest.mark.parametrize(
    ("rows", "cpus", "batch", "expected"),
    [
        (12_000, 16, 256, 256),  # many cores: one batch per block, 47 tasks for 16 CPUs
        (48_000, 16, 256, 768),  # 62 blocks of three batches
        (2_000, 2, 64, 256),  # few cores: fewer, bigger tasks
        (10**7, 2, 64, 1024),  # never above block_rows
        (101, 2, 16, 16),  # never below one batch
    ],
)
def test_blocks_are_whole_batches_about_four_per_cpu(rows, cpus, batch, expected):
    got = task_rows(1024, batch, rows, cpus)
    assert got == expected
    assert got % batch == 0 or got == 1024
    blocks = -(-rows // got)
    # about BLOCKS_PER_CPU per CPU unless a bound (one batch, block_rows) stops it
    assert got in (batch, 1024) or abs(blocks / cpus - BLOCKS_PER_CPU) <= BLOCKS_PER_CPU / 2


def test_block_rows_below_one_batch_wins():
    assert task_rows(200, 256, 12_000, 16) == 200
