"""Decoding alone: the mmbatch decode-only job against the Ray Data script that decodes the
same way, and against the cores x the single-core decode rate (the ceiling).

N synthetic 640x480 JPEGs (flat shapes, about 3 KB each) in Parquet shards, decoded to RGB with the shorter side at
``--resize`` (PIL draft mode, then bicubic): what ``decode_image`` does. Each contender runs
in a fresh process, Ray start included, and writes Parquet (ids, original sizes):

* single  - one process, one core, the decode function in a loop (x cores = the ceiling);
* raydata - ``read_parquet -> map_batches(decode) -> write_parquet``, as Ray's docs write it;
* job     - ``mmbatch`` with one ``decode_image`` step.

Figures only; nothing is asserted.

    python benchmarks/decode.py --n 2000
    python benchmarks/decode.py --n 2000 --shards 2 --row-group-rows 125   # files bigger than a block
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    add_contender_args,
    emit,
    machine,
    measure,
    photo_corpus,
    ray_init,
    row_groups_label,
    run_contender,
)

CONTENDERS = ("single", "raydata", "job")


def single(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from mmbatch.operators.image import read_image

    blobs = [b for f in sorted(args.data.glob("*.parquet")) for b in pq.read_table(f, columns=["image"]).column("image").to_pylist()]
    t = time.perf_counter()
    for b in blobs:
        read_image(b, args.resize, 2**31, {})
    return {"img_s": len(blobs) / (time.perf_counter() - t)}


def raydata(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import ray.data

    from mmbatch.operators.image import read_image

    resize = args.resize

    def decode(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes = [read_image(b, resize, 2**31, {})[1:] for b in batch["image"]]
        return {"id": batch["id"], "width": np.array([s[0] for s in sizes]), "height": np.array([s[1] for s in sizes])}

    t = time.perf_counter()
    ray_init()
    ray.data.read_parquet(str(args.data)).map_batches(decode, batch_size=64).write_parquet(str(args.out / "raydata"))
    return {"img_s": args.n / (time.perf_counter() - t)}


def job(args: argparse.Namespace) -> dict[str, Any]:
    from mmbatch.pipelines.run import run_job
    from mmbatch.pipelines.spec import job_from_dict

    spec = job_from_dict({"name": "bench-decode", "input": {"path": str(args.data), "id_column": "id"},
                          "steps": [{"op": "decode_image", "resize": args.resize, "batch_size": 64}],
                          "output": {"path": str(args.out / "job")}})
    t = time.perf_counter()
    summary = run_job(spec, overwrite=True)
    return {"img_s": summary.input_rows / (time.perf_counter() - t), "rows": summary.rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--resize", type=int, default=224)
    ap.add_argument("--shards", type=int, default=8, help="Parquet files of the corpus")
    ap.add_argument("--row-group-rows", type=int, default=None, help="rows per row group (default: one per file)")
    ap.add_argument("--workdir", default=None)
    add_contender_args(ap)
    args = ap.parse_args()
    if args.contender:
        fn = {"single": single, "raydata": raydata, "job": job}[args.contender]
        return emit(measure(lambda: fn(args)))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmbatch-bench-decode-"))
    data = photo_corpus(work / f"jpegs-{args.n}-{args.shards}-{args.row_group_rows}", args.n, shards=args.shards,
                        row_group_rows=args.row_group_rows)
    common = ["--n", str(args.n), "--resize", str(args.resize), "--data", str(data), "--out", str(work / "out")]
    groups = row_groups_label(args.row_group_rows)
    print(f"machine: {machine()}; {args.n} JPEGs 640x480 in {args.shards} Parquet files ({groups}), "
          f"decoded to shorter side {args.resize}")
    got = {name: run_contender(__file__, name, common) for name in CONTENDERS}
    cores = os.cpu_count() or 1
    ceiling = cores * got["single"]["img_s"]
    for name, f in got.items():
        print(f"{name:8s} {f['img_s']:8.1f} img/s   peak PSS {f['peak_pss_mib']:6.0f} MiB")
    print(f"ceiling ({cores} cores x single): {ceiling:.1f} img/s")
    print(f"job / raydata: {got['job']['img_s'] / got['raydata']['img_s']:.3f}   "
          f"job / ceiling: {got['job']['img_s'] / ceiling:.3f}   raydata / ceiling: {got['raydata']['img_s'] / ceiling:.3f}")


if __name__ == "__main__":
    main()
