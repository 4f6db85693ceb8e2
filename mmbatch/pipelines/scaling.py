"""Autoscaling clusters: what the cluster could grow to, asking its autoscaler for the nodes
a job needs, and waiting for them (with a readable line and a limit).

A cluster autoscales when Ray reports either

- a cluster config in the GCS (autoscaler v2, KubeRay's and the cluster launcher's when
  v2 is on): its node types, each with its resources and min/max count, so a request no
  node type can ever hold is refused before anything waits; or
- an autoscaler v1 whose node types are not the read-only ones Ray makes up for a fixed
  cluster (``node_<id>``): the node types' sizes are not published there, so any request
  is taken as one it may satisfy, and ``--wait`` bounds the wait.

:class:`ClusterView` and its methods are plain data (``check_cluster`` and the tests use
them without Ray); :func:`describe_cluster`, :func:`scale_up` and :func:`release` call Ray.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

STATUS_KEY = "__autoscaling_status"
"""The GCS key an autoscaler v1 monitor reports to (``ray_constants.DEBUG_AUTOSCALING_STATUS``)."""


@dataclass(frozen=True)
class NodeType:
    """A kind of node the autoscaler can add: resources per node, at most ``max_workers`` of
    them (None: no limit)."""

    name: str
    resources: dict[str, float]
    max_workers: int | None


@dataclass
class ClusterView:
    """The cluster a job is checked against: the resources of the nodes up now, and whether
    (and with which node types) an autoscaler can add more."""

    total: dict[str, float]
    autoscaler: bool = False
    node_types: list[NodeType] | None = None
    """None with an autoscaler: it runs, but does not publish its node types (v1)."""

    @property
    def kind(self) -> str:
        return "autoscaling" if self.autoscaler else "fixed"

    def hosts(self, need: dict[str, float]) -> bool | None:
        """Whether some node type the autoscaler may add holds ``need`` on one node (None:
        the node types are unknown)."""
        if self.node_types is None:
            return None
        return any(
            nt.max_workers != 0 and all(nt.resources.get(k, 0.0) >= v - 1e-9 for k, v in need.items() if v)
            for nt in self.node_types
        )

    def capacity(self, resource: str) -> float | None:
        """The most of ``resource`` the cluster can have: what it has now on a fixed
        cluster; plus every node type at its maximum on an autoscaling one (None: no
        limit known)."""
        now = self.total.get(resource, 0.0)
        if not self.autoscaler:
            return now
        if self.node_types is None or any(nt.max_workers is None and nt.resources.get(resource) for nt in self.node_types):
            return None
        return max(now, now + sum(nt.resources.get(resource, 0.0) * (nt.max_workers or 0) for nt in self.node_types))

    def describe_types(self) -> str:
        if not self.node_types:
            return "none"
        return ", ".join(
            f"{nt.name} ({', '.join(f'{k}={v:g}' for k, v in sorted(nt.resources.items()) if k in ('CPU', 'GPU'))}"
            f" x{'unlimited' if nt.max_workers is None else nt.max_workers})"
            for nt in self.node_types
        )


def shortfall(need: dict[str, float], total: dict[str, float]) -> dict[str, float]:
    """What ``total`` lacks of ``need``, per resource."""
    return {k: v - total.get(k, 0.0) for k, v in need.items() if total.get(k, 0.0) < v - 1e-9}


def summed(bundles: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + v
    return out


def describe(amounts: dict[str, float]) -> str:
    """``{"GPU": 2, "CPU": 1.5}`` -> ``2 GPUs, 1.5 CPUs``."""
    order = sorted(amounts, key=lambda k: (k != "GPU", k != "CPU", k))
    return ", ".join(f"{amounts[k]:g} {k}{'' if amounts[k] == 1 else 's'}" for k in order)


# -- Ray ---------------------------------------------------------------------------------
def _v1_autoscaler_types() -> bool:
    """True when an autoscaler v1 runs with node types of its own (not Ray's read-only
    ``node_<id>`` types of a fixed cluster)."""
    from ray.autoscaler._private.util import format_readonly_node_type
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(STATUS_KEY)
    if not raw:
        return False
    try:
        mapping = json.loads(raw).get("autoscaler_report", {}).get("node_type_mapping") or {}
    except (ValueError, AttributeError):
        return False
    return any(kind != format_readonly_node_type(node) for node, kind in mapping.items())


def describe_cluster() -> ClusterView:
    """The connected cluster: its resources now, and its autoscaler's node types if any."""
    import ray

    total = {k: float(v) for k, v in ray.cluster_resources().items()}
    config = None
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # an older Ray without the published cluster config
        config = None
    if config is not None and config.node_group_configs:
        groups = list(config.node_group_configs)
        types = [
            NodeType(g.name, {k: float(v) for k, v in g.resources.items()}, None if g.max_count == -1 else int(g.max_count))
            for g in groups
        ]
        scales = any(g.max_count == -1 or g.max_count > g.min_count for g in groups)
        return ClusterView(total, scales, types if scales else None)
    return ClusterView(total, _v1_autoscaler_types())


@dataclass
class ScaleUp:
    """Waits for an autoscaler to bring the resources of ``bundles``."""

    bundles: list[dict[str, float]]
    wait: float
    why: str
    """The steps that need the nodes (for the messages)."""
    write: Callable[[str], object] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    every: float = 5.0

    def run(self, resources: Callable[[], dict[str, float]]) -> float:
        """Request the bundles, then poll ``resources`` until they are there; returns the
        seconds waited. Raises ``JobRunError`` after ``wait`` seconds."""
        from ray.autoscaler.sdk import request_resources

        from .planning import JobRunError

        need = summed(self.bundles)
        request_resources(bundles=[{k: v for k, v in b.items() if v} for b in self.bundles])
        start = last = time.monotonic()
        short = missing = shortfall(need, resources())
        if short:
            self.write(f"waiting for {describe(short)} (autoscaler) for {self.why}: 0 s")
        while short:
            now = time.monotonic()
            if now - start >= self.wait:
                raise JobRunError(
                    f"{self.why}: waited {self.wait:g} s for the autoscaler to add {describe(short)} "
                    f"(the cluster has {describe({k: resources().get(k, 0.0) for k in need})}); "
                    "see `ray status` on the head node for pending or failed nodes, or raise --wait"
                )
            if now - last >= self.every:
                self.write(f"waiting for {describe(short)} (autoscaler) for {self.why}: {now - start:.0f} s")
                last = now
            time.sleep(0.5)
            short = shortfall(need, resources())
        waited = time.monotonic() - start
        if waited > 0.5:
            self.write(f"the autoscaler added {describe(missing)} for {self.why} in {waited:.0f} s")
        return waited


def release() -> None:
    """Withdraw this job's standing request, so the autoscaler may remove idle nodes."""
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[])
