"""The installed torch/torchaudio pair loads, and a broken pair stops training with one line."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from cltm_sb import cli, environment
from cltm_sb.environment import InstallError, pair_fix_command, require_loadable_torchaudio

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def test_torchaudio_extension_and_speechbrain_audio_load(tmp_path: Path) -> None:
    """What a mismatched pair breaks: torchaudio's compiled extension and SpeechBrain's audio reading."""
    import torchaudio._extension
    from speechbrain.dataio.dataio import read_audio

    assert torchaudio._extension._IS_TORCHAUDIO_EXT_AVAILABLE
    assert environment.torchaudio_problem() is None
    wav = tmp_path / "tone.wav"
    tone = np.sin(np.linspace(0, 440 * 2 * np.pi, 16000)).astype("float32")
    soundfile.write(wav, tone, 16000)
    audio = read_audio(str(wav))
    assert audio.shape == (16000,)
    assert np.allclose(audio.numpy(), tone, atol=1e-4)


def test_setup_cfg_pins_one_exact_pair() -> None:
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    requirements = [line.strip() for line in parser["options"]["install_requires"].splitlines() if line.strip()]
    pins = {r.split("==")[0]: r.split("==")[1] for r in requirements if r.split("==")[0] in ("torch", "torchaudio")}
    assert set(pins) == {"torch", "torchaudio"}, f"torch and torchaudio must be pinned with ==: {requirements}"
    assert pins["torch"] == pins["torchaudio"], "the pinned pair must be one release"



def test_installed_versions_are_the_declared_ones() -> None:
    """The tests run on what setup.cfg declares (transformers is capped below its first untested
    release): a requirement installed outside its range means the tests vouch for nothing."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    lines = [line.strip() for line in parser["options"]["install_requires"].splitlines() if line.strip()]
    requirements = [Requirement(line) for line in lines]
    assert any(r.name == "transformers" and any(s.operator == "<" for s in r.specifier) for r in requirements)
    for requirement in requirements:
        installed = version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), f"{requirement.name} {installed}: {requirement}"


@pytest.fixture
def broken_torchaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing torchaudio's extension fails, as it does beside a torch of another release."""
    monkeypatch.setitem(sys.modules, "torchaudio._extension", None)


def test_broken_pair_names_both_versions_and_the_fix(broken_torchaudio: None) -> None:
    with pytest.raises(InstallError) as caught:
        require_loadable_torchaudio()
    message = str(caught.value)
    assert "\n" not in message
    assert f"torchaudio {environment.installed_version('torchaudio')}" in message
    assert f"torch {environment.installed_version('torch')}" in message
    assert pair_fix_command() in message
    assert pair_fix_command().startswith("pip install torch==")


@pytest.mark.parametrize("argv", [["run", "no-such-plan"], ["demo", "--out", "never-written"]])
def test_training_commands_fail_fast_on_a_broken_pair(
    broken_torchaudio: None, argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cltm {argv[0]}: error: torchaudio ") and "pip install torch==" in err
    assert "\n" not in err and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "nothing is written before the check"


def test_recipes_fail_fast_on_a_broken_pair(broken_torchaudio: None) -> None:
    from cltm_sb.recipe.run import main

    with pytest.raises(SystemExit, match=r"^error: torchaudio .* pip install torch=="):
        main("gr", ["hparams/gender.yaml"])


def test_analysis_commands_do_not_need_torchaudio(broken_torchaudio: None, tmp_path: Path) -> None:
    matrix = tmp_path / "m.csv"
    matrix.write_text(",en,es\nen,1,0.5\nes,0.4,1\n", encoding="utf-8")
    assert cli.main(["analyze", str(matrix), "--json"]) == 0
