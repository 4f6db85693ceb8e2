"""The run manifest, ``<output>/manifest.json``: what a run was (the job as resolved, a
fingerprint of each step and metric and of each model, the library versions, the input
files) and how far it got. ``--resume`` holds a new run against it: a changed job is refused
with what changed, an unchanged finished one is a no-op. No Ray here."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel

from mmbatch.core.models import fingerprint

from . import io
from .inputs import InputScan
from .spec import Job

MANIFEST = "manifest.json"
MODEL_KEYS = ("model", "controlnet", "weights", "reference_stats")
"""Config keys naming weights or statistics a result depends on."""
RUN_KEYS = {"resources", "batch_size", "threads", "fetch_timeout", "fetch_retries"}
"""Config keys that change how a step runs, not what it writes (a resume may change them)."""


def _versions() -> dict[str, str]:
    found = {}
    for name in ("mmbatch", "ray", "torch", "transformers", "diffusers", "faster-whisper", "pyarrow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _describe(config: BaseModel) -> dict[str, Any]:
    """A config's result-relevant keys, with a fingerprint of every model it names."""
    keys = {k: v for k, v in config.model_dump(mode="json").items() if k not in RUN_KEYS}
    options = keys.get("storage_options") or {}
    for key in MODEL_KEYS:
        value = keys.get(key)
        if isinstance(value, str) and value:
            keys[f"{key}_fingerprint"] = fingerprint(value, options, keys.get("revision"))
    return keys


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Manifest:
    job: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    """Each step's label -> its result-relevant config and model fingerprints."""
    metrics: dict[str, dict[str, Any]]
    inputs: list[dict[str, Any]]
    versions: dict[str, str]
    state: str = "running"
    """running (or interrupted) | complete"""
    counts: dict[str, int] = field(default_factory=dict)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    updated: str = ""

    @classmethod
    def of(cls, job: Job, scan: InputScan) -> Manifest:
        steps = {s.label: {"op": s.op} | _describe(s.config) for s in job.steps}
        metrics = {f"metrics[{i}] {m.metric}": _describe(m) for i, m in enumerate(job.metrics)}
        inputs = [{"path": f.path, "size": f.size, "mtime": f.mtime} for f in scan.files]
        return cls(job.raw, steps, metrics, inputs, _versions(), skipped_files=scan.skipped)

    def step_changes(self, new: Manifest) -> list[str]:
        """What differs between this (earlier) run and ``new`` in what rows/ holds."""
        changes = []
        for label in sorted(set(self.steps) | set(new.steps)):
            old_s, new_s = self.steps.get(label), new.steps.get(label)
            if old_s is None or new_s is None:
                changes.append(f"{label} was {'added' if old_s is None else 'removed'}")
                continue
            for key in sorted(set(old_s) | set(new_s)):
                if old_s.get(key) != new_s.get(key):
                    what = "its weights changed" if key.endswith("_fingerprint") else f"{old_s.get(key)!r} -> {new_s.get(key)!r}"
                    changes.append(f"{label}: {key.removesuffix('_fingerprint')} {what}")
        old_in = {f["path"]: f for f in self.inputs}
        new_in = {f["path"]: f for f in new.inputs}
        removed = set(old_in) - set(new_in)  # added files are new work: a resume does them
        changed = [p for p in set(old_in) & set(new_in) if old_in[p] != new_in[p]]
        if changed:
            changes.append(f"input file {changed[0]} changed (size or mtime)" + (f" and {len(changed) - 1} more" if len(changed) > 1 else ""))
        if removed:
            changes.append(f"{len(removed)} input files are gone, e.g. {sorted(removed)[0]}")
        return changes

    def fingerprint(self) -> str:
        return _hash([self.steps, self.inputs])

    def save(self, path: str, storage_options: dict[str, Any]) -> None:
        self.updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        io.write_json(path, MANIFEST, asdict(self), storage_options)


def read_manifest(path: str, storage_options: dict[str, Any]) -> Manifest | None:
    data = io.read_json(path, MANIFEST, storage_options)
    if data is None:
        return None
    return Manifest(**data)
