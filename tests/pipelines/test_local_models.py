"""Local model paths on a multi-node cluster: every node must see them (shared storage), or
the job must name a URL. ``preflight`` collects the local paths by step; a zero-CPU task per
node reports the ones it lacks; ``check_local_models`` refuses naming step, path and node."""

import pytest

from mmbatch.pipelines.executor import paths_missing_on_nodes
from mmbatch.pipelines.planning import JobRunError, check_local_models
from mmbatch.pipelines.spec import job_from_dict, preflight


def test_preflight_collects_local_model_paths_by_step(tmp_path, tiny_models):
    clip = tiny_models("clip")
    job = job_from_dict({"name": "m", "input": {"path": "x", "columns": ["id", "image"]},
                         "steps": [{"op": "decode_image"}, {"op": "embed", "model": str(clip)}],
                         "output": {"path": str(tmp_path / "o")}})
    assert preflight(job) == {"steps[1] (op: embed)": [("model", str(clip.resolve()))]}


def test_a_path_some_node_lacks_is_refused_naming_step_path_and_node(ray_session, tmp_path):
    there = tmp_path / "model"
    there.mkdir()
    missing = paths_missing_on_nodes([str(there), "/nowhere/clip"])
    ((node, paths),) = missing.items()  # the one node of the session's Ray lacks only the second
    assert paths == ["/nowhere/clip"]
    check_local_models({"steps[1] (op: embed)": [("model", str(there))]}, missing)
    with pytest.raises(JobRunError, match=r"steps\[2\] \(op: caption\): model /nowhere/clip is a local path "
                                          r"that 1 node\(s\) of this cluster do not have \(.*\).*object-store URL"):
        check_local_models({"steps[2] (op: caption)": [("model", "/nowhere/clip")]}, missing)
    assert node in str(missing)
