"""kfkit installs beside other kits: it never takes the top-level names `components` or `pipelines`.

Google's Vertex AI end-to-end samples, a common starting point, have packages of those very names.
"""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_an_installed_kfkit_lives_beside_packages_named_components_and_pipelines(tmp_path):
    installed, theirs = tmp_path / "installed", tmp_path / "theirs"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(installed), str(REPO)], check=True, capture_output=True, text=True, timeout=600)
    for name in ("components", "pipelines"):
        (theirs / name).mkdir(parents=True)
        (theirs / name / "__init__.py").write_text(f"OWNER = 'another kit: {name}'\n")
    probe = ("import components, pipelines, kfkit, kfkit.components.ingest.component, kfkit.pipelines.training\n"
             "print(components.OWNER, pipelines.OWNER, kfkit.__file__, kfkit.components.__file__, sep='\\n')")
    # -S: no site-packages .pth files, so this checkout's editable install cannot answer for kfkit
    path = [str(installed), str(theirs), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]

    done = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": ":".join(path), "PATH": ""}, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    owner_c, owner_p, kfkit_file, components_file = done.stdout.splitlines()
    assert (owner_c, owner_p) == ("another kit: components", "another kit: pipelines")
    assert kfkit_file.startswith(str(installed)) and components_file.startswith(str(installed / "kfkit" / "components"))
    assert not (installed / "components").exists() and not (installed / "pipelines").exists()
    assert (installed / "kfkit" / "components" / "ingest" / "component.yaml").exists()  # the specs travel too
