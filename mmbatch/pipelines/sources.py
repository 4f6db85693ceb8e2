"""Ray Data datasources of the formats Ray's own readers do not fit (imported only when a
job reads one; :mod:`mmbatch.pipelines.formats` says why for each).

* :class:`TarShards` -- WebDataset shards on Ray's ``FileBasedDatasource`` (Ray's file
  listing, parallel read tasks, retries, any filesystem), grouped by
  :mod:`mmbatch.pipelines.tar_samples`, so that a sample that cannot be read is an error
  row instead of a failed read task.
* :class:`HFSplit` -- a Hugging Face split in row ranges, each read task memory-mapping
  the split itself (no hub request, no copy through the driver).
* :class:`ParquetRowGroups` -- Parquet files in pieces of whole row groups, a few pieces
  per read task: Ray's ``read_parquet`` reads at least a whole file per task, so a file
  bigger than a block would have to be cut into blocks after the read, in a stage of its
  own. Rows, columns and Hive partition columns are those of Ray's reader (a test compares
  the two)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, FileBasedDatasource, ReadTask

from . import hf_source
from .tar_samples import Sample, samples_table, stream_members

SAMPLES_PER_BLOCK = 256


class TarShards(FileBasedDatasource):
    _FILE_EXTENSIONS = ["tar"]

    def __init__(self, paths: list[str], names: dict[str, str], id_column: str, **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self.names, self.id_column = names, id_column

    def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
        from .tar_samples import group_members

        shard = self.names.get(path, path)
        errors: list[str] = []
        batch: list[Sample] = []
        for sample in group_members(stream_members(f, shard, errors), shard):
            batch.append(sample)
            if len(batch) > SAMPLES_PER_BLOCK:  # the last one stays: it may be the one a read error cut
                yield samples_table(batch[:-1], shard, self.id_column)
                batch = batch[-1:]
        if errors:
            if batch:
                batch[-1].error = errors[0]
            else:
                batch.append(Sample(f"{shard}#unreadable", {}, errors[0]))
        if batch:
            yield samples_table(batch, shard, self.id_column)


class HFSplit(Datasource):
    def __init__(self, path: str, config: str | None, split: str, id_column: str, columns: list[str] | None,
                 rows: int, block_rows: int) -> None:
        self.path, self.config, self.split, self.id_column = path, config, split, id_column
        self.columns, self.rows, self.block_rows = columns, rows, block_rows

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        n = max(1, min(parallelism, -(-self.rows // self.block_rows)))
        bounds = [self.rows * i // n for i in range(n + 1)]
        tasks = []
        for start, stop in zip(bounds, bounds[1:], strict=False):
            if stop <= start:
                continue
            meta = BlockMetadata(num_rows=stop - start, size_bytes=None, input_files=None, exec_stats=None)
            tasks.append(ReadTask(self._reader(start, stop), meta, per_task_row_limit=per_task_row_limit))
        return tasks

    def _reader(self, start: int, stop: int) -> Any:
        path, config, split, id_column, columns, step = (self.path, self.config, self.split, self.id_column,
                                                         self.columns, self.block_rows)

        def read() -> Iterator[pa.Table]:
            ds = hf_source.open_split(path, config, split)
            for lo in range(start, stop, step):
                yield hf_source.rows_table(ds, lo, min(stop, lo + step), split, id_column, columns)

        return read


Piece = tuple[str, list[int]]
"""A Parquet file's path and the ids of some of its row groups."""


def split_row_groups(paths: Sequence[str], row_groups: Mapping[str, Sequence[int]], tasks: int) -> list[list[Piece]]:
    """The row groups of ``paths`` (rows of each, by path) in at most ``tasks`` runs of about
    equal rows, in file and row-group order: each run is a read task's pieces, consecutive row
    groups of one file making one piece."""
    total = sum(sum(row_groups[p]) for p in paths)
    runs: list[list[Piece]] = [[] for _ in range(max(1, tasks))]
    before = 0
    for path in paths:
        for group, rows in enumerate(row_groups[path]):
            run = runs[min(len(runs) - 1, before * len(runs) // max(1, total))]
            if run and run[-1][0] == path:
                run[-1][1].append(group)
            else:
                run.append((path, [group]))
            before += rows
    return [r for r in runs if r]


class ParquetRowGroups(Datasource):
    """One read task per run of :func:`split_row_groups`, reading its row groups with
    pyarrow and adding Hive partition columns as Ray's reader does."""

    def __init__(self, runs: list[list[Piece]], row_groups: Mapping[str, Sequence[int]], filesystem: Any,
                 columns: list[str] | None, batch_rows: int) -> None:
        """``batch_rows``: rows per Arrow batch read (each a table the read task yields)."""
        self.runs, self.filesystem, self.columns, self.batch_rows = runs, filesystem, columns, batch_rows
        self.rows = [sum(row_groups[path][g] for path, groups in run for g in groups) for run in runs]

    def get_name(self) -> str:
        return "ParquetRowGroups"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        return [
            ReadTask(self._reader(run), BlockMetadata(num_rows=rows, size_bytes=None, input_files=None, exec_stats=None),
                     per_task_row_limit=per_task_row_limit)
            for run, rows in zip(self.runs, self.rows, strict=True)
        ]

    def _reader(self, run: list[Piece]) -> Any:
        filesystem, columns, batch_size = self.filesystem, self.columns, self.batch_rows

        def read() -> Iterator[pa.Table]:
            import pyarrow.parquet as pq
            from ray.data.datasource import Partitioning, PartitionStyle, PathPartitionParser

            partitions = PathPartitionParser(Partitioning(PartitionStyle.HIVE))
            for path, groups in run:
                with filesystem.open_input_file(path) as f:
                    pf = pq.ParquetFile(f)
                    names = pf.schema_arrow.names
                    # as Ray's reader: a partition value is a string column, unless the file has the column
                    values = {k: v for k, v in partitions(path).items()
                              if k not in names and (columns is None or k in columns)}
                    read = None if columns is None else [c for c in columns if c not in values]
                    for batch in pf.iter_batches(batch_size, row_groups=groups, columns=read):
                        table = pa.Table.from_batches([batch])
                        for name, value in values.items():
                            table = table.append_column(name, pa.repeat(pa.scalar(value, pa.string()), table.num_rows))
                        yield table

        return read
