"""Input block sizing: whole batches of the first step, about four blocks per CPU; files
read in pieces of whole row groups."""

import pytest
import ray

from mmbatch.pipelines.executor import BLOCKS_PER_CPU, task_rows
from mmbatch.pipelines.sources import split_row_groups


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


def test_row_groups_are_split_into_runs_of_about_equal_rows_in_order():
    groups = {"a": (100, 100, 100), "b": (50, 50), "c": (300,), "d": (10,) * 40}
    runs = split_row_groups(list(groups), groups, 4)
    total = sum(map(sum, groups.values()))
    assert len(runs) == 4
    # every row group exactly once, in file and row-group order
    order = [(path, g) for run in runs for path, ids in run for g in ids]
    assert order == [(path, g) for path, rows in groups.items() for g in range(len(rows))]
    # a run's pieces are consecutive row groups, one piece per file
    for run in runs:
        assert len({path for path, _ in run}) == len(run)
        assert all(ids == list(range(ids[0], ids[-1] + 1)) for _, ids in run)
    # about total / 4 rows each: off by less than the biggest row group
    sizes = [sum(groups[path][g] for path, ids in run for g in ids) for run in runs]
    assert sum(sizes) == total and max(abs(s - total / 4) for s in sizes) < 300


def test_fewer_row_groups_than_tasks_make_one_run_each():
    assert split_row_groups(["a", "b"], {"a": (5, 5), "b": (5,)}, 8) == [[("a", [0])], [("a", [1])], [("b", [0])]]


@pytest.mark.parametrize("columns", [None, ["image", "id"]])
def test_row_group_reader_gives_the_rows_of_rays_parquet_reader(ray_session, tmp_path, columns):
    """ParquetRowGroups against Ray Data's own reader: same rows, columns and types, Hive
    partition columns included, in files of several row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow.fs import LocalFileSystem

    from mmbatch.pipelines.formats import read_parquet, read_parquet_row_groups
    from mmbatch.testing.images import write_image_parquet

    write_image_parquet(tmp_path / "src", 90, size=(8, 8), shards=3)
    files, row_groups = [], {}
    for i, src in enumerate(sorted((tmp_path / "src").glob("*.parquet"))):
        path = tmp_path / "data" / f"split={'train' if i else 'test'}" / f"part-{i}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(src), path, row_group_size=7)
        files.append(str(path))
        row_groups[str(path)] = tuple(pq.ParquetFile(path).metadata.row_group(g).num_rows
                                      for g in range(pq.ParquetFile(path).metadata.num_row_groups))
    fs = LocalFileSystem()
    ours = read_parquet_row_groups(files, fs, columns, row_groups, 4, {})
    theirs = read_parquet(files, fs, columns, None)  # type: ignore[arg-type]
    got, want = (pa.concat_tables(ray.get(ds.to_arrow_refs())).sort_by("id") for ds in (ours, theirs))
    assert got.num_rows == 90
    assert ("split" in got.column_names) if columns is None else (set(got.column_names) == {"image", "id"})
    assert sorted(got.column_names) == sorted(want.column_names)
    assert got.select(want.column_names).equals(want)  # values and types
