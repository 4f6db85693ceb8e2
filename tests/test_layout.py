"""The folder tree is the import tree: a copy of ``mmbatch/`` on PYTHONPATH imports and
discovers everything (what Ray's ``py_modules``/``working_dir`` ship), ships its type
marker, and the layers depend one way."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "mmbatch"


def test_a_copy_of_the_package_folder_on_pythonpath_imports_and_discovers(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "mmbatch", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import mmbatch, mmbatch.operators.base as b, mmbatch.core.metric as m, mmbatch.pipelines.run;"
        "print(mmbatch.__file__); print(len(b.OPERATORS.names()), len(m.METRICS.names()))"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    where, counts = out.splitlines()
    assert Path(where).parent == tmp_path / "mmbatch"
    from mmbatch.core.metric import METRICS
    from mmbatch.operators.base import OPERATORS

    assert counts == f"{len(OPERATORS.names())} {len(METRICS.names())}" and len(OPERATORS.names()) >= 13


def test_package_ships_its_type_marker():
    from importlib.resources import files

    assert files("mmbatch").joinpath("py.typed").is_file()
    assert '"mmbatch" = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def _imports(folder: Path) -> set[str]:
    """The ``mmbatch.*`` subpackages that the modules of ``folder`` import (absolute or relative)."""
    found = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found |= {n.split(".")[1] for n in names if n.startswith("mmbatch.") and n.count(".") >= 1}
    return found


def test_layers_depend_one_way():
    assert _imports(PACKAGE / "core") <= {"core"}
    assert _imports(PACKAGE / "operators") <= {"core", "operators"}  # never metrics or pipelines
    assert _imports(PACKAGE / "metrics") <= {"core", "metrics"}  # never operators or pipelines
    for folder in ("core", "operators", "metrics"):
        for path in (PACKAGE / folder).glob("*.py"):
            assert "import ray" not in path.read_text(), f"{path} imports Ray"
