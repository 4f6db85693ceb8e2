"""Bulk-ASR throughput: real-time factor of the mmbatch job against the same model in a plain loop.

RTFx = seconds of audio transcribed per wall-clock second. One run builds N synthetic
recordings of mixed durations (some over 30 s, so long-form decoding is in the mix) in
several formats, then measures on the same files and the same model:

* loop - the backend called directly, one file after another, as a user would write it:
         PyAV decode -> processor -> generate (Whisper docs' recipes) / WhisperModel.transcribe
         (with --batched: faster-whisper's BatchedInferencePipeline, file by file);
* job  - the mmbatch job (decode_audio tasks -> transcribe actor) on a local Ray:
         end-to-end wall time (Ray and actor start, read and write included) and the
         transcribe actor's steady state (audio seconds per busy second);

and prints the ratio job / loop, plus how many transcripts are identical (greedy decoding).
Figures only; nothing is asserted. Default: tiny random-weight models, so it runs anywhere.

    python benchmarks/asr.py --n 60                                  # tiny Whisper, transformers
    python benchmarks/asr.py --backend ctranslate2                   # tiny Whisper, faster-whisper
    python benchmarks/asr.py --backend ctranslate2 --model DIR --max-new-tokens 0   # a real model
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SR = 16_000


def make_corpus(folder: Path, n: int, lo: float, hi: float, long_every: int) -> list[Path]:
    """N files, durations uniform in [lo, hi]; every ``long_every``-th one 35-75 s long."""
    import random

    from mmbatch.testing.audio import encode_audio, synthetic_clip

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = random.Random(i)
        seconds = rng.uniform(35, 75) if long_every and i % long_every == long_every - 1 else rng.uniform(lo, hi)
        ext = ("flac", "mp3", "wav", "m4a", "ogg", "opus")[i % 6]
        paths.append(folder / f"rec-{i:05d}.{ext}")
        paths[-1].write_bytes(encode_audio(synthetic_clip(i, round(seconds, 2), "speech"), SR, ext))
    return paths


class Loop:
    """The backend used directly, file by file."""

    def __init__(self, args: argparse.Namespace, model: str) -> None:
        self.backend, self.max_new_tokens, self.batched = args.backend, args.max_new_tokens, args.batched
        if self.backend == "ctranslate2":
            from faster_whisper import BatchedInferencePipeline, WhisperModel

            self.model = WhisperModel(model, device="cpu", compute_type=args.compute_type, cpu_threads=args.threads)
            self.pipeline = BatchedInferencePipeline(self.model)
            return
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCTC,
            AutoModelForSpeechSeq2Seq,
            AutoProcessor,
        )

        torch.set_num_threads(args.threads)
        self.whisper = AutoConfig.from_pretrained(model).model_type == "whisper"
        auto = AutoModelForSpeechSeq2Seq if self.whisper else AutoModelForCTC
        self.model = auto.from_pretrained(model).eval()
        self.processor = AutoProcessor.from_pretrained(model)

    def __call__(self, path: Path) -> str:
        from mmbatch.operators.audio import read_audio  # PyAV -> float32 mono, as the job decodes

        audio = read_audio(str(path), SR)[0]
        if self.backend == "ctranslate2":
            kw = {"beam_size": 1, "temperature": 0.0, "max_new_tokens": self.max_new_tokens,
                  "condition_on_previous_text": False}
            if not self.batched:
                segments, _ = self.model.transcribe(audio, **kw)
            elif len(audio) <= 30 * SR:  # one chunk; the job batches such files across rows
                segments, _ = self.pipeline.transcribe(audio, vad_filter=False, multilingual=self.model.model.is_multilingual, **kw)
            else:  # long: VAD chunks of the file in one batch
                segments, _ = self.pipeline.transcribe(audio, vad_filter=True, batch_size=16, **kw)
            return "".join(s.text for s in segments).strip()
        import torch

        with torch.inference_mode():
            if not self.whisper:
                inputs = self.processor(audio, sampling_rate=SR, return_tensors="pt")
                return self.processor.batch_decode(self.model(**inputs).logits.argmax(-1))[0].strip()
            if len(audio) <= 30 * SR:  # the Whisper docs' short-form and long-form recipes
                inputs = self.processor(audio, sampling_rate=SR, return_tensors="pt")
                ids = self.model.generate(inputs.input_features, max_new_tokens=self.max_new_tokens)
            else:
                inputs = self.processor(audio, sampling_rate=SR, return_tensors="pt", truncation=False,
                                        padding="longest", return_attention_mask=True)
                ids = self.model.generate(**inputs, return_timestamps=True, max_new_tokens=self.max_new_tokens)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def run_job(folder: Path, out: Path, args: argparse.Namespace, model: str) -> tuple[float, Any]:
    from mmbatch.pipelines.run import run_job as run
    from mmbatch.pipelines.spec import job_from_dict

    step: dict[str, Any] = {"op": "transcribe", "backend": args.backend, "model": model,
                            "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
                            "threads": args.threads, "resources": {"cpus": 1, "concurrency": args.actors}}
    if args.backend == "ctranslate2":
        step |= {"compute_type": args.compute_type, "batched": args.batched}
    job = job_from_dict({
        "name": "bench-asr",
        "input": {"path": str(folder), "format": "audio", "id_column": "path"},
        "steps": [{"op": "decode_audio", "batch_size": 8}, step],
        "output": {"path": str(out), "drop": ["audio"]},
    })
    t = time.perf_counter()
    summary = run(job, overwrite=True)
    return time.perf_counter() - t, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="number of recordings")
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--long-every", type=int, default=10, help="every k-th file is 35-75 s (0: none)")
    ap.add_argument("--backend", choices=("transformers", "ctranslate2"), default="transformers")
    ap.add_argument("--model", default=None, help="model folder (default: a tiny random Whisper built here)")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="per 30 s window; 0: the model's limit")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--actors", type=int, default=1, help="transcribe actors")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="torch/CT2 threads")
    ap.add_argument("--compute-type", default="default", help="ctranslate2 compute type")
    ap.add_argument("--batched", action="store_true", help="ctranslate2: BatchedInferencePipeline in the job")
    ap.add_argument("--repeats", type=int, default=3, help="loop repeats (median reported)")
    ap.add_argument("--job-repeats", type=int, default=1, help="job repeats (median reported)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--verbose", action="store_true", help="list the transcripts that differ from the loop's")
    args = ap.parse_args()
    args.max_new_tokens = args.max_new_tokens or None

    from mmbatch.operators.audio import read_audio
    from mmbatch.testing import audio as testing

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmbatch-asr-bench-"))
    model = args.model
    if model is None:
        build = testing.build_tiny_whisper_ct2 if args.backend == "ctranslate2" else testing.build_tiny_whisper
        model = str(build(work / f"tiny-whisper-{args.backend}"))
    t = time.perf_counter()
    paths = make_corpus(work / "audio", args.n, args.min_seconds, args.max_seconds, args.long_every)
    audio_seconds = sum(len(read_audio(str(p))[0]) / SR for p in paths)
    print(f"data: {len(paths)} files, {audio_seconds / 60:.1f} min of audio "
          f"({args.min_seconds:g}-{args.max_seconds:g} s, every {args.long_every}th 35-75 s; "
          f"{time.perf_counter() - t:.0f} s to make)")
    print(f"model: {model} [{args.backend}], max_new_tokens={args.max_new_tokens}, {args.threads} threads, "
          f"{os.cpu_count()} cores")

    loop = Loop(args, model)
    loop(paths[0])  # warm-up
    loop_rtfx, loop_texts = [], {}
    for _ in range(args.repeats):
        t = time.perf_counter()
        loop_texts = {str(p): loop(p) for p in paths}
        loop_rtfx.append(audio_seconds / (time.perf_counter() - t))
    loop_med = statistics.median(loop_rtfx)
    print(f"plain loop           RTFx {loop_med:8.2f}  (median of {args.repeats}: "
          + ", ".join(f"{r:.2f}" for r in loop_rtfx) + ")")

    wall_rtfx, steady_rtfx = [], []
    for _ in range(args.job_repeats):
        wall, summary = run_job(work / "audio", work / "out", args, model)
        busy = summary.steps["steps[1] transcribe"]["seconds"]
        wall_rtfx.append(audio_seconds / wall)
        steady_rtfx.append(audio_seconds / busy / args.actors)
    wall_med, steady_med = statistics.median(wall_rtfx), statistics.median(steady_rtfx)
    print(f"mmbatch job (wall)   RTFx {wall_med:8.2f}  ({summary.rows} rows + {summary.errors} errors; "
          f"Ray + actor start, read, write included)   ratio job/loop {wall_med / loop_med:.3f}")
    print(f"mmbatch job (transcribe actor, steady) RTFx {steady_med:8.2f} per actor   "
          f"ratio to loop {steady_med / loop_med:.3f}")

    import pyarrow.parquet as pq

    rows = pq.read_table(work / "out" / "rows", columns=["path", "text"]).to_pylist()
    same = sum(loop_texts.get(r["path"].split("://")[-1]) == r["text"] for r in rows)
    print(f"transcripts identical to the loop's: {same}/{len(rows)}")
    for r in rows:
        if args.verbose and loop_texts.get(r["path"].split("://")[-1]) != r["text"]:
            print("  differs:", r["path"], repr(r["text"][:80]), repr(loop_texts.get(r["path"].split("://")[-1], "")[:80]))


if __name__ == "__main__":
    main()
