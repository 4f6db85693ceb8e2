"""Memory against corpus size: peak PSS of the whole process tree (driver and every Ray
process) of the mmbatch job ``decode_image -> embed`` on 256x256 JPEGs, at several corpus
sizes, each in a fresh process. A data path that streams stays flat as rows grow.

The tree is sampled every 0.25 s at every size (on 2 cores one sample of a job's dozen
processes takes 35-55 ms of CPU, so the sampler takes about a fifth of a core): a sparser
sampler would see fewer of a short run's moments, and so miss its peak more often than a
long run's.

    python benchmarks/memory.py --sizes 1000,8000              # tiny CLIP: the data path's memory
    python benchmarks/memory.py --sizes 1000,8000 --model b32  # CLIP ViT-B/32 compute
    python benchmarks/memory.py --sizes 1000,8000,16000 --row-group-rows 128  # files read in row groups

Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    TreeMemory,
    add_contender_args,
    build_clip_b32,
    emit,
    machine,
    measure,
    photo_corpus,
    row_groups_label,
    run_contender,
)


def job(args: argparse.Namespace) -> dict[str, Any]:
    from mmbatch.pipelines.run import run_job
    from mmbatch.pipelines.spec import job_from_dict

    spec = job_from_dict({
        "name": "bench-memory", "input": {"path": str(args.data), "id_column": "id"},
        "steps": [{"op": "decode_image", "batch_size": 64},
                  {"op": "embed", "model": str(args.model), "batch_size": 64, "resources": {"cpus": 1}}],
        "output": {"path": str(args.out)},
    })
    t = time.perf_counter()
    summary = run_job(spec, overwrite=True)
    return {"img_s": summary.input_rows / (time.perf_counter() - t), "rows": summary.rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,8000")
    ap.add_argument("--model", choices=("tiny", "b32"), default="tiny")
    ap.add_argument("--row-group-rows", type=int, default=None, help="rows per Parquet row group (default: one per file)")
    ap.add_argument("--workdir", default=None)
    add_contender_args(ap)
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.contender:
        args.model = Path(args.model_dir)
        return emit(measure(lambda: job(args), TreeMemory(interval=0.25, budget=0)))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmbatch-bench-memory-"))
    if args.model == "b32":
        model = build_clip_b32(work / "clip-vit-b32-random")
    else:
        from mmbatch.testing.vision import build_tiny_clip

        model = work / "clip-tiny"
        if not (model / "config.json").exists():
            build_tiny_clip(model)
    groups = row_groups_label(args.row_group_rows)
    print(f"machine: {machine()}; decode_image -> embed ({args.model} CLIP), 256x256 JPEGs in 8 Parquet files ({groups})")
    first = None
    for n in (int(x) for x in args.sizes.split(",")):
        groups = args.row_group_rows
        data = photo_corpus(work / f"jpegs-{n}-{groups}", n, size=(256, 256), row_group_rows=groups)
        f = run_contender(__file__, "job", ["--data", str(data), "--out", str(work / f"out-{n}"),
                                            "--model-dir", str(model)])
        first = first or f["peak_pss_mib"]
        print(f"{n:7d} rows: peak PSS {f['peak_pss_mib']:7.0f} MiB ({f['peak_pss_mib'] / first:.2f}x the first), "
              f"{f['img_s']:.1f} img/s", flush=True)


if __name__ == "__main__":
    main()
