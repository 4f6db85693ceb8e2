"""What one worker of a step or metric reserves: plain data, never derived from the
driver's hardware (a plan built on a CPU head node still asks for the GPUs it needs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Resources(BaseModel):
    """CPUs, GPUs (fractions share a GPU), memory and the number of workers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpus: float = Field(1.0, ge=0, description="logical CPUs reserved per worker")
    gpus: float = Field(0.0, ge=0, description="GPUs per worker; fractions share a GPU")
    memory: int | None = Field(None, ge=0, description="bytes of RAM reserved per worker")
    concurrency: int | tuple[int, int] = Field(
        1, description="workers: N, or [min, max] for an autoscaling actor pool"
    )

    @field_validator("concurrency")
    @classmethod
    def _check_concurrency(cls, v: int | tuple[int, int]) -> int | tuple[int, int]:
        lo, hi = (v, v) if isinstance(v, int) else v
        if lo < 1 or hi < lo:
            raise ValueError(f"concurrency must be N >= 1 or [min, max] with 1 <= min <= max, got {v}")
        return v

    @property
    def pool(self) -> tuple[int, int]:
        return (self.concurrency, self.concurrency) if isinstance(self.concurrency, int) else self.concurrency

    @property
    def threads(self) -> int:
        """torch intra-op threads for a worker holding these CPUs (at least 1)."""
        return max(1, int(round(self.cpus)))
