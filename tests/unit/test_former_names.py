"""The package's former names, components and operator_tools, for one release (outsystems_redis/_former.py).

Each runs in a fresh interpreter: what an import does depends on what was imported before it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.tools import ROOT

# A name of every kind the move made: the shell, the core, a renderer, an agent, a tool and its submodule.
FORMER = {
    "components.session_store": "outsystems_redis.pulumi.session_store",
    "components.network": "outsystems_redis.pulumi.network",
    "components.judge": "outsystems_redis.judge",
    "components.render.cloud_config": "outsystems_redis.render.cloud_config",
    "components.render.metrics_agent": "outsystems_redis.server_files.metrics_agent",
    "operator_tools.health": "outsystems_redis.tools.health",
    "operator_tools.health.gather": "outsystems_redis.tools.health.gather",
    "operator_tools.rehearsal": "outsystems_redis.tools.rehearsal",
}


def python(code: str, cwd: Path = ROOT, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "always", *args, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                                            "PYTHONPATH": str(ROOT)})


def test_each_former_name_is_the_new_module_itself_after_a_warning_that_names_the_new_place() -> None:
    done = python(f"""
        import importlib, json, warnings
        out = {{}}
        for old, new in {FORMER!r}.items():
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                module = importlib.import_module(old)
            out[old] = [module is importlib.import_module(new), module.__spec__.name, [str(w.message) for w in said]]
        from components.render import metrics_agent
        from components import network
        out["from"] = [metrics_agent.__name__, network.__name__]
        print(json.dumps(out))
        """)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for old, new in FORMER.items():
        same, spec, said = found[old]
        assert same and spec == new, (old, found[old])  # the module keeps its own spec
    # The warning comes once per former package, at its first import, and names where it went.
    assert "'components' is now 'outsystems_redis'" in found["components.session_store"][2][0]
    assert "'operator_tools' is now 'outsystems_redis.tools'" in found["operator_tools.health"][2][0]
    assert found["from"] == ["outsystems_redis.server_files.metrics_agent", "outsystems_redis.pulumi.network"]


def test_a_programs_own_components_package_is_left_alone(tmp_path: Path) -> None:
    """The clash the new name ends: a Pulumi program with its own components/ keeps it, even beside the alias."""
    own = tmp_path / "components"
    own.mkdir()
    (own / "__init__.py").write_text("")
    (own / "network.py").write_text("MINE = True\n")
    done = python("""
        import operator_tools  # the alias finder is installed (the program's folder comes first on the path)
        import components.network
        print(getattr(components.network, "MINE", False), components.network.__name__)
        """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "components.network"], done.stdout


def test_python_dash_m_with_a_former_name_runs_the_tool() -> None:
    done = subprocess.run([sys.executable, "-m", "operator_tools.check", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m outsystems_redis.tools.check"), \
        done.stdout + done.stderr
