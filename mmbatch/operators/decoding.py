"""What the decode steps (decode_image, decode_audio, decode_video) share: their keys and
their shape -- stateless CPU tasks that read encoded media (bytes, or a path/URL) from
``column`` and write a transient decoded ``output``; the encoded bytes are not written."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import Field

from mmbatch.core.files import PathAccessKeys

from .base import OpConfig, Operator


class DecodeKeys(OpConfig, PathAccessKeys):
    """Keys of every decode step (each sets its own defaults for ``column`` and ``output``)."""

    column: str = Field(description="binary column of encoded media, or string column of paths/URLs")
    output: str = Field(description="output column of decoded samples (not written)")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for URLs")


DC = TypeVar("DC", bound=DecodeKeys)


class Decoder(Operator[DC]):
    """Base of the decode steps: Ray tasks, the encoded column in, the decoded one out."""

    stateful = False
    media: ClassVar[str]
    """What the column holds, for the descriptions: ``image``, ``audio``, ``video``."""

    def inputs(self) -> dict[str, str]:
        return {self.config.column: f"encoded {self.media} bytes or path/URL"}

    def transient_outputs(self) -> set[str]:
        return {self.config.output}

    def media_inputs(self) -> set[str]:
        return {self.config.column}
