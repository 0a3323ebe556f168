"""Output folders (``model gguf --out``, ``export --to --force``, finetune, tiny): never someone else's, never the input,
and a kill while one is replaced loses nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tilepilot.model_runtime.folders import MARKER_NAME, OutputFolderError, folder_in_place
from tilepilot.model_runtime.tiny import build_tiny_checkpoint
from tests.conftest import REPO, tilepilot


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "other-model.gguf").write_bytes(b"GGUF precious")
    return path


def _built(out: Path, text: str) -> None:
    with folder_in_place(out) as tmp:
        (tmp / "model.txt").write_text(text)


def test_a_folder_tilepilot_wrote_is_replaced_whole_and_marked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _built(out, "first")
    assert (out / MARKER_NAME).is_file()
    _built(out, "second")
    assert (out / "model.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left aside


def test_a_folder_tilepilot_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    out = _user_folder(tmp_path / "models")
    with pytest.raises(OutputFolderError, match="holds files tilepilot did not write"):
        _built(out, "x")
    assert (out / "other-model.gguf").read_bytes() == b"GGUF precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


@pytest.mark.parametrize("where", ["same", "parent", "child", "parent-by-symlink"])
def test_the_input_is_never_the_output(tmp_path: Path, where: str) -> None:
    root = tmp_path / "exports"
    _built(root, "an earlier output")  # marked as tilepilot's: only the input rule can refuse it
    ckpt = root / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (tmp_path / "link").symlink_to(root)
    out = {"same": ckpt, "parent": root, "child": ckpt / "gguf", "parent-by-symlink": tmp_path / "link"}[where]
    with pytest.raises(OutputFolderError, match="the input"):
        with folder_in_place(out, [ckpt]) as tmp:
            (tmp / "x").write_text("x")
    assert (ckpt / "config.json").read_text() == "{}" and not (ckpt / "gguf").exists()


# A real child process, SIGKILLed by itself right after the n-th rename of the swap.
KILLER = """
import os, signal, sys
from pathlib import Path
from tilepilot.model_runtime import folders
real, calls = Path.rename, []
def rename(self, target):
    result = real(self, target)
    calls.append(1)
    if len(calls) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
Path.rename = rename
with folders.folder_in_place(Path(sys.argv[1])) as tmp:
    (tmp / "model.txt").write_text("new")
"""


@pytest.mark.parametrize("killed_after", [1, 2], ids=["old-aside-new-not-in", "swapped-old-not-removed"])
def test_a_kill_during_the_swap_loses_nothing(tmp_path: Path, killed_after: int) -> None:
    out = tmp_path / "out"
    _built(out, "old")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(out), str(killed_after)], cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".out.tilepilot-old-")]
    assert len(aside) == 1 and (aside[0] / "model.txt").read_text() == "old"  # the old copy is whole
    if killed_after == 1:
        assert not out.exists()
    else:
        assert (out / "model.txt").read_text() == "new"
    _built(out, "next")  # the next build first puts things right
    assert (out / "model.txt").read_text() == "next"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_model_gguf_refuses_other_folders_and_its_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(build_tiny_checkpoint(), ckpt)
    models = _user_folder(tmp_path / "models")
    for out, says in [(models, "holds files tilepilot did not write"), (ckpt, "is the input"), (tmp_path, "holds the input"),
                      (ckpt / "gguf", "is inside the input")]:
        proc = tilepilot("model", "gguf", str(ckpt), "--out", str(out))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 4 and len(lines) == 1 and f"--out {out}: {says}" in lines[0], proc.stderr
    assert (models / "other-model.gguf").read_bytes() == b"GGUF precious"
    assert not (ckpt / "gguf").exists() and sorted(os.listdir(ckpt)) == sorted(os.listdir(build_tiny_checkpoint()))


def test_build_tiny_refuses_a_folder_of_other_files(tmp_path: Path) -> None:
    models = _user_folder(tmp_path / "models")
    proc = tilepilot("model", "build-tiny", "--out", str(models), "--force")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 4 and len(lines) == 1 and "holds files tilepilot did not write" in lines[0], proc.stderr
    assert sorted(os.listdir(models)) == ["other-model.gguf"]


def test_model_gguf_replaces_its_own_earlier_export(tmp_path: Path) -> None:
    from tests.requires import require_llama_build

    require_llama_build()
    out = tmp_path / "gguf"
    for quant in ("f16", "q8_0"):
        proc = tilepilot("model", "gguf", "tiny", "--out", str(out), "--quant", quant, "--json")
        assert proc.returncode == 0, proc.stderr
    assert '"quant": "q8_0"' in (out / "tilepilot-gguf.json").read_text() and (out / MARKER_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gguf"]
