"""transcribe and classify_audio: each backend gives what the model called directly gives.

Tiny random-weight models (see mmbatch.testing.audio): greedy decoding, so the text must be
identical; ``max_new_tokens`` stays small because a random Whisper talks until it is stopped.
"""

import jiwer
import numpy as np
import pyarrow as pa
import pytest
import torch

from mmbatch.core.columns import column_to_python, to_arrow
from mmbatch.operators.transcribe import length_buckets
from mmbatch.testing.audio import chirp, noise, silence, speech_like, tone

from .helpers import make_op, prepare_stage

SR = 16_000
TOKENS = 6


def clips() -> list[np.ndarray]:
    """Mixed durations, so rows land in different length buckets and come back in order."""
    return [speech_like(5.0, seed=1), tone(2.0, 300.0), speech_like(12.5, seed=2), noise(1.0), chirp(7.0), silence(2.0)]


def table(waves: list[np.ndarray], **extra: list) -> pa.Table:
    return pa.table({"waveform": to_arrow(waves), **extra})


@pytest.fixture(scope="module")
def whisper(tiny_models):
    from transformers import AutoProcessor, WhisperForConditionalGeneration

    path = tiny_models("whisper")
    return path, WhisperForConditionalGeneration.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def whisper_direct(model, processor, wave, **kw) -> str:
    """The transformers Whisper docs' short-form recipe."""
    inputs = processor(wave, sampling_rate=SR, return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(inputs.input_features, max_new_tokens=TOKENS, **kw)
    return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def whisper_long_direct(model, processor, wave, **kw):
    """The docs' sequential long-form recipe: no truncation, longest padding, attention mask."""
    inputs = processor(
        wave, sampling_rate=SR, return_tensors="pt", truncation=False, padding="longest", return_attention_mask=True
    )
    with torch.inference_mode():
        return model.generate(**inputs, return_timestamps=True, max_new_tokens=TOKENS, **kw)


def test_tiny_whisper_has_the_real_multilingual_layout(whisper, ct2):
    _, model, processor = whisper
    tok, gen = processor.tokenizer, model.generation_config
    ids = tok.convert_tokens_to_ids
    assert (len(tok), ids("<|endoftext|>"), ids("<|startoftranscript|>"), ids("<|en|>")) == (51865, 50257, 50258, 50259)
    assert (ids("<|transcribe|>"), ids("<|notimestamps|>"), ids("<|0.00|>"), ids("<|30.00|>")) == (50359, 50363, 50364, 51864)
    assert gen.no_timestamps_token_id == 50363 and gen.task_to_id["translate"] == 50358 and len(gen.lang_to_id) == 99
    assert tok.decode(tok("a cat on a mat").input_ids, skip_special_tokens=True) == "a cat on a mat"
    assert ct2[1].model.is_multilingual  # CTranslate2 recognises the converted vocabulary


def test_length_buckets_sort_cap_and_split_at_the_window():
    lengths = [50, 10, 400, 20, 30, 300, 40]
    groups = length_buckets(lengths, max_padded=100)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert [[lengths[i] for i in g] for g in groups] == [[10, 20, 30], [40, 50], [300], [400]]
    # a window: short rows count as the full window and never share a batch with long ones
    groups = length_buckets(lengths, max_padded=700, window=100)
    assert [[lengths[i] for i in g] for g in groups] == [[10, 20, 30, 40, 50], [300], [400]]
    groups = length_buckets(lengths, max_padded=800, window=100)
    assert [[lengths[i] for i in g] for g in groups] == [[10, 20, 30, 40, 50], [300, 400]]


@pytest.mark.parametrize("options", [{}, {"language": "de", "task": "translate"}])
def test_whisper_equals_generate_called_directly(whisper, options):
    path, model, processor = whisper
    waves = clips()
    op = make_op("transcribe", model=str(path), max_new_tokens=TOKENS, max_batch_seconds=90, **options)
    out = op(table(waves))
    assert out.column("error").null_count == len(waves)
    texts = out.column("text").to_pylist()
    assert texts == [whisper_direct(model, processor, w, **options) for w in waves]
    assert len(set(texts)) >= 3, "the tiny model should not say the same thing for every clip"


def test_whisper_long_form_equals_the_direct_long_form_call(whisper):
    """70 s and 45 s clips (batched together) next to a short one: each long row is exactly
    Whisper's own sequential long-form result, and its segments partition the text."""
    path, model, processor = whisper
    waves = [speech_like(70.0, seed=7), speech_like(4.0, seed=8), speech_like(45.0, seed=9)]
    op = make_op("transcribe", model=str(path), max_new_tokens=TOKENS, timestamps="word")
    out = op(table(waves))
    assert out.column("error").null_count == 3
    texts, segments = out.column("text").to_pylist(), out.column("text_segments").to_pylist()
    words = out.column("text_words").to_pylist()
    for i in (0, 2):
        direct = whisper_long_direct(model, processor, waves[i], return_segments=True)
        assert texts[i] == processor.batch_decode(direct["sequences"], skip_special_tokens=True)[0].strip()
        assert [(s["start"], s["end"]) for s in segments[i]] == [
            (float(s["start"]), float(s["end"])) for s in direct["segments"][0]
        ]
        assert segments[i][-1]["end"] > 30.0, "decoding went past the first 30 s window"
        # no token lost or repeated between windows: the segments' texts make up the transcript
        assert "".join(s["text"] for s in segments[i]).replace(" ", "") == texts[i].replace(" ", "")
        assert "".join(w["text"] for w in words[i]) == texts[i].replace(" ", "")
        assert max(w["end"] for w in words[i]) > 30.0, "word times are absolute, not per window"
    assert texts[1] == whisper_direct(model, processor, waves[1], return_timestamps=True)


def test_whisper_timestamps_segments_and_words(whisper):
    path, model, processor = whisper
    waves = clips()[:3]
    out = make_op("transcribe", model=str(path), max_new_tokens=TOKENS, timestamps="word")(table(waves))
    assert out.column("error").null_count == 3
    assert out.schema.field("text_words").type == out.schema.field("text_segments").type
    for wave, text, segs, words in zip(
        waves, *(out.column(c).to_pylist() for c in ("text", "text_segments", "text_words")), strict=True
    ):
        inputs = processor(wave, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)
        direct = model.generate(
            **inputs, max_new_tokens=TOKENS, return_timestamps=True, return_segments=True, return_token_timestamps=True
        )
        assert [s["text"] for s in segs] == [
            processor.decode(s["tokens"], skip_special_tokens=True).strip() for s in direct["segments"][0]
        ]
        assert " ".join(w["text"] for w in words).replace(" ", "") == text.replace(" ", "")
        assert all(w["start"] >= 0 and w["end"] >= 0 for w in words)


def test_whisper_prepared_in_tasks_equals_the_feature_extractor_in_the_worker(whisper):
    """Clips up to 30 s get their features in the prepare tasks, exactly the extractor's; a
    45 s clip is passed on as its waveform (long-form features depend on the clips padded
    with it). Texts, segments and word times equal the worker-only path."""
    path, _, processor = whisper
    waves = [*clips(), speech_like(45.0, seed=9), speech_like(30.0, seed=3)]
    config = {"model": str(path), "max_new_tokens": TOKENS, "timestamps": "word", "max_batch_seconds": 60}
    worker = make_op("transcribe", preprocess="worker", **config)(table(waves))
    prepared = prepare_stage("transcribe", **config)(table(waves))
    features = column_to_python(prepared.column("_transcribe/input_features"))
    passed_on = column_to_python(prepared.column("_transcribe/waveform"))
    assert prepared.column("_transcribe/samples").to_pylist() == [len(w) for w in waves]
    for wave, f, rest in zip(waves, features, passed_on, strict=True):
        if len(wave) > 30 * SR:
            assert f.size == 0 and np.array_equal(rest, wave)
        else:
            assert rest.size == 0 and f.dtype == np.float32
            assert np.array_equal(f, processor.feature_extractor(wave, sampling_rate=SR, return_tensors="np").input_features[0])
    out = make_op("transcribe", **config)(prepared.drop_columns(["waveform"]))  # the worker reads no waveform
    assert out.column("error").null_count == len(waves)
    for col in ("text", "text_segments", "text_words"):
        assert out.column(col).to_pylist() == worker.column(col).to_pylist()
    assert len(set(out.column("text").to_pylist())) >= 3


def test_whisper_frame_mask_from_the_clip_lengths_is_the_extractors(whisper):
    from mmbatch.operators.asr import WhisperFeatures

    _, _, processor = whisper
    waves = [noise(1.0), np.zeros(30 * SR - 200, np.float32), np.zeros(30 * SR, np.float32), np.zeros(161, np.float32)]
    features = WhisperFeatures(processor.feature_extractor, SR)
    want = features(waves, return_tensors="np")["attention_mask"]
    assert np.array_equal(features.mask([len(w) for w in waves]), want) and len({int(m.sum()) for m in want}) == 4


def test_ctc_in_tasks_passes_the_waveform_on(ctc):
    path = str(ctc[0])
    waves = clips()
    prepared = prepare_stage("transcribe", model=path)(table(waves))
    passed_on = column_to_python(prepared.column("_transcribe/waveform"))
    assert all(np.array_equal(a, w) for a, w in zip(passed_on, waves, strict=True))
    out = make_op("transcribe", model=path)(prepared.drop_columns(["waveform"]))
    assert out.column("text").to_pylist() == make_op("transcribe", model=path, preprocess="worker")(
        table(waves)).column("text").to_pylist()


@pytest.fixture(scope="module")
def ctc(tiny_models):
    from transformers import AutoModelForCTC, AutoProcessor

    path = tiny_models("wav2vec2_ctc")
    return path, AutoModelForCTC.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def test_ctc_batched_and_padded_equals_each_clip_alone(ctc):
    path, model, processor = ctc
    waves = clips()
    out = make_op("transcribe", model=str(path), timestamps="word", max_batch_seconds=40)(table(waves))
    assert out.column("error").null_count == len(waves)
    expected = []
    for w in waves:
        inputs = processor(w, sampling_rate=SR, return_tensors="pt")
        with torch.inference_mode():
            ids = model(**inputs).logits.argmax(-1)
        expected.append(processor.batch_decode(ids)[0].strip())
    assert out.column("text").to_pylist() == expected
    for wave, text, words in zip(waves, out.column("text").to_pylist(), out.column("text_words").to_pylist(), strict=True):
        assert " ".join(w["text"] for w in words) == " ".join(text.split())
        ends = [w["end"] for w in words]
        assert ends == sorted(ends) and (not ends or ends[-1] <= len(wave) / SR + 0.05)


def test_ctc_refuses_what_it_cannot_do(ctc):
    with pytest.raises(ValueError, match="CTC models transcribe only"):
        make_op("transcribe", model=str(ctc[0]), timestamps="segment")


@pytest.fixture(scope="module")
def ct2(tiny_models):
    from faster_whisper import WhisperModel

    path = tiny_models("whisper_ct2")
    return path, WhisperModel(str(path), device="cpu", compute_type="default")


FW = {"beam_size": 1, "temperature": 0.0, "max_new_tokens": TOKENS, "condition_on_previous_text": False}


def test_ctranslate2_equals_faster_whisper_called_directly(ct2):
    path, fw = ct2
    waves = [*clips(), speech_like(40.0, seed=4)]  # and one long-form clip
    out = make_op("transcribe", model=str(path), backend="ctranslate2", max_new_tokens=TOKENS, timestamps="segment")(
        table(waves)
    )
    assert out.column("error").null_count == len(waves)
    for wave, text, segs in zip(waves, out.column("text").to_pylist(), out.column("text_segments").to_pylist(), strict=True):
        direct = list(fw.transcribe(wave, **FW)[0])
        assert text == "".join(s.text for s in direct).strip()
        assert [(s["start"], s["end"]) for s in segs] == [(s.start, s.end) for s in direct]
    assert segs[-1]["end"] > 30.0
    assert len(set(out.column("text").to_pylist())) >= 3


def test_ctranslate2_batched_across_rows_equals_the_batched_pipeline_per_file(ct2):
    from faster_whisper import BatchedInferencePipeline

    path, fw = ct2
    waves = [*clips(), speech_like(40.0, seed=4)]
    op = make_op(
        "transcribe", model=str(path), backend="ctranslate2", batched=True, max_new_tokens=TOKENS, timestamps="segment"
    )
    out = op(table(waves))
    assert out.column("error").null_count == len(waves)
    pipeline = BatchedInferencePipeline(fw)
    for wave, text, segs in zip(waves, out.column("text").to_pylist(), out.column("text_segments").to_pylist(), strict=True):
        if len(wave) <= 30 * SR:  # short clips of all rows went through one batch
            direct = list(pipeline.transcribe(wave, vad_filter=False, multilingual=True, **FW)[0])
        else:  # long ones: split at silences by faster-whisper's VAD, chunks batched
            direct = list(pipeline.transcribe(wave, vad_filter=True, batch_size=16, **FW)[0])
        assert text == "".join(s.text for s in direct).strip()
        got = [t for s in segs for t in (s["start"], s["end"])]
        assert got == pytest.approx([t for s in direct for t in (s.start, s.end)], abs=1e-3)


def test_per_row_wer_matches_jiwer(whisper):
    path, _, _ = whisper
    waves = clips()[:4]
    refs = ["the cat sat on the mat", None, "", "Hello, World!"]
    op = make_op("transcribe", model=str(path), max_new_tokens=TOKENS, reference="ref")
    out = op(table(waves, ref=refs))
    assert out.column("error").null_count == 4
    wer = out.column("wer").to_pylist()
    for ref, hyp, score in zip(refs, out.column("text").to_pylist(), wer, strict=True):
        assert score == (None if ref is None else jiwer.process_words(ref, hyp).wer)
    # Whisper's English normaliser on both sides: "Hello, World!" vs "hello world" -> 0
    op = make_op("transcribe", model=str(path), max_new_tokens=TOKENS, reference="ref", wer_normalizer="whisper_english")
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    out = op(table(waves[:1], ref=["Hello, World!"]))
    hyp = out.column("text").to_pylist()[0]
    assert out.column("wer").to_pylist() == [jiwer.process_words(norm("Hello, World!"), norm(hyp)).wer]


def test_config_errors_are_clear():
    from mmbatch.operators.transcribe import TranscribeConfig

    with pytest.raises(ValueError):
        TranscribeConfig(model="x", timestamps="sentence")
    cfg = TranscribeConfig(model="x", reference="ref", timestamps="word")
    op = __import__("mmbatch.operators.transcribe", fromlist=["Transcribe"]).Transcribe(cfg)
    assert set(op.outputs()) == {"text", "text_segments", "text_words", "wer"}
    assert op.optional_inputs() == {"ref": "reference transcript"}


def test_classify_audio_equals_the_model_on_each_clip(tiny_models):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    path = tiny_models("audio_classifier")
    model = AutoModelForAudioClassification.from_pretrained(path).eval()
    extractor = AutoFeatureExtractor.from_pretrained(path)
    waves = clips()
    out = make_op("classify_audio", model=str(path), top_k=2, max_batch_seconds=20)(table(waves))
    assert out.column("error").null_count == len(waves)
    names = model.config.id2label
    for wave, label, topk, scores in zip(
        waves, *(out.column(c).to_pylist() for c in ("label", "label_topk", "label_scores")), strict=True
    ):
        with torch.inference_mode():
            probs = model(**extractor(wave, sampling_rate=SR, return_tensors="pt")).logits.softmax(-1)[0]
        best = probs.topk(2)
        assert topk == [names[i] for i in best.indices.tolist()] and label == topk[0]
        assert scores == pytest.approx(best.values.tolist(), abs=1e-5)


@pytest.mark.slow
def test_audio_folder_job_accounts_for_every_file(tmp_path, tiny_models, run_job_dict):
    """format: audio over a folder of every format plus broken files, through Ray."""
    import pyarrow.parquet as pq

    from mmbatch.testing.audio import BAD_KINDS, write_audio_folder

    files = write_audio_folder(tmp_path / "audio", 12, durations=(0.5, 4.0), bad=BAD_KINDS, silent=1)
    out = tmp_path / "out"
    summary = run_job_dict({
        "input": {"path": str(tmp_path / "audio"), "format": "audio", "id_column": "path"},
        "steps": [
            {"op": "decode_audio", "batch_size": 4},
            {"op": "transcribe", "model": str(tiny_models("whisper")), "max_new_tokens": 4,
             "timestamps": "segment", "batch_size": 8, "resources": {"cpus": 0.5}},
        ],
        "output": {"path": str(out), "drop": ["audio"]},  # keep the encoded files out of the rows
    })
    rows, errors = pq.read_table(out / "rows"), pq.read_table(out / "errors")
    assert summary.input_rows == len(files) == summary.rows + summary.errors
    assert (summary.rows, summary.errors) == (13, len(BAD_KINDS))
    bad = sorted(str(f.path) for f in files if f.bad)
    assert sorted(p.split("://")[-1] for p in errors.column("path").to_pylist()) == bad
    assert all(e.startswith("steps[0] decode_audio:") for e in errors.column("error").to_pylist())
    assert "waveform" not in rows.column_names and "audio" not in rows.column_names
    want = {str(f.path): f.seconds for f in files if not f.bad}
    for path, seconds in zip(rows.column("path").to_pylist(), rows.column("duration").to_pylist(), strict=True):
        assert seconds == pytest.approx(want[path.split("://")[-1]], abs=0.16)
    assert rows.schema.field("text_segments").type == pa.list_(
        pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
    )


@pytest.mark.slow
def test_parquet_job_with_references_per_row_and_corpus_wer(tmp_path, tiny_models, run_job_dict):
    import pyarrow.parquet as pq

    from mmbatch.testing.audio import encode_audio

    waves = clips()
    refs = ["the cat", "a dog runs", "", "one two three", "zzz", "hello world"]
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(
        pa.table({"id": [f"r{i}" for i in range(6)], "audio": [encode_audio(w, ext="flac") for w in waves],
                  "reference": refs}),
        data / "part-0.parquet",
    )
    out = tmp_path / "out"
    summary = run_job_dict({
        "input": {"path": str(data), "id_column": "id"},
        "steps": [
            {"op": "decode_audio"},
            {"op": "transcribe", "backend": "ctranslate2", "model": str(tiny_models("whisper_ct2")),
             "max_new_tokens": 4, "reference": "reference", "resources": {"cpus": 0.5}},
            {"op": "score", "metric": "cer", "prediction": "text", "reference": "reference",
             "resources": {"cpus": 0.5}},
        ],
        "output": {"path": str(out)},
        "metrics": [{"metric": "wer", "prediction": "text", "reference": "reference"}],
    })
    rows = pq.read_table(out / "rows")
    assert summary.rows == 6 and summary.errors == 0
    hyps, references = rows.column("text").to_pylist(), rows.column("reference").to_pylist()
    assert rows.column("wer").to_pylist() == [jiwer.process_words(r, h).wer for r, h in zip(references, hyps, strict=True)]
    assert rows.column("cer").to_pylist() == [jiwer.cer(r, h) for r, h in zip(references, hyps, strict=True)]
    (metric,) = summary.metrics
    assert metric["value"] == jiwer.process_words(references, hyps).wer and metric["count"] == 6


SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things.",
             "Speech recognition at scale needs the same samples everywhere."]


def espeak_files(folder) -> list:
    """Real speech: espeak-ng (22.05 kHz 16-bit WAV, so resampling to 16 kHz matters), also
    re-encoded as FLAC, MP3 and Ogg/Vorbis."""
    import shutil
    import subprocess

    from mmbatch.operators.audio import read_audio
    from mmbatch.testing.audio import encode_audio

    assert shutil.which("espeak-ng"), "espeak-ng is installed by .ci/run (apt-get install espeak-ng)"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(SENTENCES):
        wav = folder / f"say-{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        paths.append(wav)
        native = read_audio(str(wav), sample_rate=22_050)[0]
        for ext in ("flac", "mp3", "ogg"):
            paths.append(folder / f"say-{i}.{ext}")
            paths[-1].write_bytes(encode_audio(native, 22_050, ext))
    return paths


def test_ctranslate2_job_reads_audio_exactly_as_faster_whisper_does(ct2, tmp_path, run_job_dict):
    """decode_audio feeding a ctranslate2 transcribe resamples as faster_whisper.decode_audio
    (16-bit), so the job's transcripts equal faster-whisper transcribing the files itself."""
    from faster_whisper import decode_audio

    from mmbatch.pipelines.spec import job_from_dict

    path, fw = ct2
    files = espeak_files(tmp_path / "speech")
    spec = {"input": {"path": str(tmp_path / "speech"), "format": "audio", "id_column": "path"},
            "steps": [{"op": "decode_audio"},
                      {"op": "transcribe", "backend": "ctranslate2", "model": str(path), "max_new_tokens": TOKENS,
                       "resources": {"cpus": 0.5}}],
            "output": {"path": str(tmp_path / "out")}}
    job = job_from_dict({"name": "asr"} | spec)
    assert job.steps[0].config.resampler == "faster_whisper"  # chosen for the ctranslate2 step
    kept = job_from_dict({"name": "asr"} | spec | {"steps": [{"op": "decode_audio", "resampler": "float"}, spec["steps"][1]]})
    assert kept.steps[0].config.resampler == "float"  # unless the job sets it

    exact = make_op("decode_audio", resampler="faster_whisper")(pa.table({"audio": [str(p) for p in files]}))
    floats = make_op("decode_audio")(pa.table({"audio": [str(p) for p in files]}))
    from mmbatch.core.columns import column_to_python

    for p, ours, flt in zip(files, column_to_python(exact.column("waveform")), column_to_python(floats.column("waveform")),
                            strict=True):
        assert np.array_equal(ours, decode_audio(str(p)))
        assert not np.array_equal(flt, ours)  # the float resampler differs: that is why it matters

    summary = run_job_dict(spec)
    assert summary.rows == len(files) and summary.errors == 0
    import pyarrow.parquet as pq

    rows = {r["path"]: r["text"] for r in pq.read_table(tmp_path / "out" / "rows").to_pylist()}
    for p in files:
        assert rows[str(p)] == "".join(s.text for s in fw.transcribe(str(p), **FW)[0]).strip(), p.name
