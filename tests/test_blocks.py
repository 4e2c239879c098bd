"""Building blocks: pooling, layer averaging, heads, the tiny HuBERT, Brains from third-party YAML."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from recipe_toy import make_prepared

from cltm_sb.io import sha256_file
from cltm_sb.recipe.brains import GenderBrain, NonFiniteLossError, SpeakerIDBrain
from cltm_sb.recipe.data import make_dataset, read_manifests
from cltm_sb.recipe.encoders import (
    HFSSLEncoder,
    LayerAverage,
    MaskedMeanPooling,
    build_tiny_hubert,
    gabor_filterbank,
    masked_mean,
)
from cltm_sb.recipe.heads import LinearHead

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory) -> Path:
    return build_tiny_hubert(tmp_path_factory.mktemp("cache") / "tiny")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("toy"), locales=("xa",), speakers_per_gender=2,
                         clips_per_speaker=2, test_speakers_per_gender=1, seconds=0.6)


def test_masked_mean_ignores_padding() -> None:
    x = torch.randn(1, 5, 3)
    padded = torch.cat([x, torch.full((1, 3, 3), 1e6)], dim=1)
    np.testing.assert_allclose(masked_mean(padded, torch.tensor([5 / 8])), x.mean(1), rtol=1e-5)
    np.testing.assert_allclose(MaskedMeanPooling()(x), x.mean(1))


def test_layer_average() -> None:
    layers = [torch.full((1, 2, 2), float(i)) for i in range(5)]
    assert LayerAverage(1)(layers).unique().item() == 4.0
    assert LayerAverage(4)(layers).unique().item() == 2.5
    with pytest.raises(ValueError, match="at most 5"):
        LayerAverage(6)(layers)


def test_linear_head() -> None:
    head = LinearHead(4, 3, dropout=0.1)
    assert head(torch.zeros(2, 4)).shape == (2, 3) and head.n_classes == 3
    with pytest.raises(ValueError, match="2 classes"):
        LinearHead(4, 1)


def test_tiny_hubert_is_deterministic_and_loads_offline(tiny_hubert: Path, tmp_path: Path) -> None:
    state = torch.random.get_rng_state()
    other = build_tiny_hubert(tmp_path / "again")
    assert torch.equal(state, torch.random.get_rng_state())  # caller's RNG untouched
    assert sha256_file(other / "model.safetensors") == sha256_file(tiny_hubert / "model.safetensors")
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in tiny_hubert.iterdir()
    }
    assert build_tiny_hubert(tiny_hubert) == tiny_hubert  # cached
    enc = HFSSLEncoder(tiny_hubert, layerdrop=0.0, expected_hidden_size=48)
    assert enc.model.config.layerdrop == 0.0 and enc.config_summary()["layerdrop"] == 0.0
    layers, lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    assert len(layers) == 3 and layers[-1].shape[-1] == 48
    assert lens[0] == 1.0 and 0.45 < lens[1] < 0.55
    with pytest.raises(ValueError, match="encoder_dim"):
        HFSSLEncoder(tiny_hubert, expected_hidden_size=64)


def test_hf_encoder_expands_home_and_names_a_wrong_folder(
    tiny_hubert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`~/folder` loaded as a hub id ("pre-download it with huggingface-cli download ~/...") although
    the run's checks had accepted it; a mistyped or empty folder gave transformers' messages."""
    from cltm_sb.recipe import RecipeError

    monkeypatch.setenv("HOME", str(tiny_hubert.parent))
    assert HFSSLEncoder(f"~/{tiny_hubert.name}").hidden_size == 48
    with pytest.raises(RecipeError, match=r"'/no/such/folder' is neither a checkpoint folder nor a hub id"):
        HFSSLEncoder("/no/such/folder")
    with pytest.raises(RecipeError, match="no config.json"):
        HFSSLEncoder(tmp_path)


def test_tiny_hubert_in_a_folder_of_other_files_is_one_line(tmp_path: Path) -> None:
    """--tiny_hubert_folder naming a folder of other files raised OSError "Directory not empty"."""
    from cltm_sb.recipe import RecipeError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(RecipeError, match=r"mine: it holds other files; give a new or empty folder"):
        build_tiny_hubert(tmp_path / "mine")
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # its temporary folder is gone


def test_gabor_filterbank_pairs_peak_at_mel_spaced_centres() -> None:
    bank = gabor_filterbank(16, 400)[:, 0].double()
    spectrum = torch.fft.rfft(bank, n=16000).abs()  # 1 Hz bins
    peaks = spectrum.argmax(dim=1).reshape(8, 2)
    assert (peaks[:, 0] - peaks[:, 1]).abs().max() <= 3  # cosine and sine of a pair share a band
    assert 70 <= peaks[0, 0] <= 90 and 6950 <= peaks[-1, 0] <= 7050
    mel = 2595 * torch.log10(1 + peaks[:, 0] / 700)
    steps = mel.diff()
    assert torch.allclose(steps, steps.mean(), rtol=0.1)  # even steps on the mel scale
    pairs = bank.reshape(8, 2, 400)
    assert (pairs[:, 0] * pairs[:, 1]).sum(-1).abs().max() < 0.05  # quadrature
    assert torch.allclose(bank.norm(dim=1), torch.full((16,), 2**0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="even"):
        gabor_filterbank(15, 400)


def test_tiny_hubert_front_end_is_the_filterbank(tiny_hubert: Path) -> None:
    enc = HFSSLEncoder(tiny_hubert, layerdrop=0.0)
    conv = enc.model.feature_extractor.conv_layers[0].conv
    assert torch.equal(conv.weight, gabor_filterbank(conv.out_channels, conv.kernel_size[0]))


def _speaker_brain(tiny_hubert: Path, n_classes: int = 2) -> SpeakerIDBrain:
    torch.manual_seed(0)
    enc = HFSSLEncoder(tiny_hubert, layerdrop=0.0)
    modules = {"encoder": enc, "head": LinearHead(48, n_classes)}
    return SpeakerIDBrain(modules=modules, hparams={"embed_layers": 2, "pooling": MaskedMeanPooling()},
                          run_opts={"device": "cpu", "noprogressbar": True})


def test_verification_embedding_is_never_padded(tiny_hubert: Path, toy: Path) -> None:
    """Embedding alone == embedding from embed_dataset (the code never pads embeddings).

    HuBERT-base CNNs (group norm) normalise over padding too, which is why each test utterance is
    embedded alone. The tiny encoder uses layer norm with an attention mask, so for it a padded
    batch gives the same embedding as well; this test shows both facts.
    """
    brain = _speaker_brain(tiny_hubert)
    rows = read_manifests([toy / "xa" / "test.csv"], toy.parent / "audio")
    data = make_dataset(rows)
    ids, emb = brain.embed_dataset(data)
    with data.output_keys_as(["id", "sig"]):
        first, second = data[0]["sig"], data[1]["sig"]
    alone = brain.embed(first[None])[0]
    np.testing.assert_allclose(emb[0], alone.numpy(), atol=1e-6)
    assert abs(np.linalg.norm(emb, axis=1) - 1).max() < 1e-5
    n = max(len(first), len(second)) + 3200
    batch = torch.zeros(2, n)
    batch[0, : len(first)], batch[1, : len(second)] = first, second
    padded = brain.embed(batch, torch.tensor([len(first) / n, len(second) / n]))[0]
    torch.testing.assert_close(padded, alone, atol=1e-4, rtol=1e-4)


THIRD_PARTY_YAML = """
seed: 7
__set_seed: !apply:speechbrain.utils.seed.seed_everything [!ref <seed>, False]
hub: !PLACEHOLDER
label_classes: [female, male]
embed_layers: 2
pool_layers: 1
train_log: !PLACEHOLDER
train_logger: !new:speechbrain.utils.train_logger.FileTrainLogger
    save_file: !ref <train_log>
encoder: !new:cltm_sb.recipe.encoders.HFSSLEncoder
    source: !ref <hub>
    layerdrop: 0.0
pooling: !new:cltm_sb.recipe.encoders.MaskedMeanPooling
head: !new:cltm_sb.recipe.heads.LinearHead
    input_size: 48
    n_classes: 2
modules:
    encoder: !ref <encoder>
    head: !ref <head>
opt_class: !name:torch.optim.AdamW
    lr: 0.001
"""


def test_third_party_yaml_builds_and_trains_a_brain(tiny_hubert: Path, toy: Path, tmp_path: Path) -> None:
    hp = load_hyperpyyaml(THIRD_PARTY_YAML, {"hub": str(tiny_hubert), "train_log": str(tmp_path / "log.txt")})
    rows = read_manifests([toy / "xa" / "a.csv"], toy.parent / "audio")
    data = make_dataset(rows, "gender", hp["label_classes"])
    brain = GenderBrain(modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                        run_opts={"device": "cpu", "noprogressbar": True}, run_name="third")
    before = hp["head"].linear.weight.detach().clone()
    brain.fit(range(1, 2), data, train_loader_kwargs={"batch_size": 2})
    assert not torch.equal(before, hp["head"].linear.weight)
    assert len(brain.optimizer.param_groups) == 1  # one group: the clip is the global norm
    brain.evaluate(data, test_loader_kwargs={"batch_size": 1})
    assert set(brain.stage_metrics) >= {"macro_f1", "accuracy", "recall"}
    assert (tmp_path / "log.txt").read_text().startswith("epoch: 1 - train loss: ")


@pytest.mark.parametrize(
    ("key", "stage", "add"),
    [
        ("train_logger", "fit", "train_logger: !new:speechbrain.utils.train_logger.FileTrainLogger"),
        ("pooling", "fit", "pooling: !new:cltm_sb.recipe.encoders.MaskedMeanPooling"),
        ("pooling", "evaluate", "pooling: !new:cltm_sb.recipe.encoders.MaskedMeanPooling"),
        ("label_classes", "evaluate", "label_classes: [female, male]"),
    ],
)
def test_a_yaml_without_a_key_the_brain_reads_is_named(
    tiny_hubert: Path, toy: Path, tmp_path: Path, key: str, stage: str, add: str
) -> None:
    """A YAML of one's own without train_logger or pooling gave a bare AttributeError
    ("'types.SimpleNamespace' object has no attribute 'train_logger'")."""
    from cltm_sb.recipe import RecipeError

    hp = load_hyperpyyaml(THIRD_PARTY_YAML, {"hub": str(tiny_hubert), "train_log": str(tmp_path / "log.txt")})
    data = make_dataset(read_manifests([toy / "xa" / "a.csv"], toy.parent / "audio"), "gender", ["female", "male"])
    del hp[key]
    brain = GenderBrain(modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                        run_opts={"device": "cpu", "noprogressbar": True})
    before = hp["head"].linear.weight.detach().clone()
    with pytest.raises(RecipeError, match="^" + re.escape(f"GenderBrain: the hparams have no '{key}'; add `{add}")) as caught:
        if stage == "fit":
            brain.fit(range(1, 2), data, train_loader_kwargs={"batch_size": 2})
        else:
            brain.evaluate(data, test_loader_kwargs={"batch_size": 1})
    assert "\n" not in str(caught.value)
    # The logger is read once the epoch is trained (a Brain may train without one until then).
    assert torch.equal(before, hp["head"].linear.weight) == (key != "train_logger")


class _NaNEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, wavs, lens):
        return [wavs[:, :, None] * self.w * float("nan")], lens


def test_too_many_pool_layers_names_pool_layers(tiny_hubert: Path, toy: Path) -> None:
    """A recipe of one's own with pool_layers above the encoder's layers was told to set
    embed_layers, a key it may not even have."""
    data = make_dataset(read_manifests([toy / "xa" / "a.csv"], toy.parent / "audio"), "gender", ["female", "male"])
    brain = GenderBrain(
        modules={"encoder": HFSSLEncoder(tiny_hubert), "head": LinearHead(48, 2)},
        hparams={"label_classes": ["female", "male"], "pool_layers": 5, "pooling": MaskedMeanPooling()},
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    with pytest.raises(ValueError, match="set pool_layers to at most 3"):
        brain.evaluate(data, test_loader_kwargs={"batch_size": 1})


def test_read_manifests_takes_one_path(toy: Path) -> None:
    """One manifest given as a string was read as its characters: "/: manifest not found"."""
    one = read_manifests(str(toy / "xa" / "a.csv"), toy.parent / "audio")
    assert one == read_manifests([toy / "xa" / "a.csv"], toy.parent / "audio")


def test_a_label_key_without_classes_says_to_pass_them(toy: Path) -> None:
    """make_dataset(rows, "gender") said the values were "not in the label map []"."""
    from cltm_sb.recipe import RecipeError

    rows = read_manifests([toy / "xa" / "a.csv"], toy.parent / "audio")
    with pytest.raises(RecipeError, match="label_key 'gender' needs label_classes"):
        make_dataset(rows, "gender")


def test_a_wrong_data_root_names_the_audio_file_and_data_root(toy: Path, tmp_path: Path) -> None:
    """A wrong data_root said "cannot read audio ...: Error opening ...: System error."."""
    from cltm_sb.recipe import RecipeError

    data = make_dataset(read_manifests([toy / "xa" / "a.csv"], tmp_path), "gender", ["female", "male"])
    with pytest.raises(RecipeError, match=rf"audio file {tmp_path}/xa/.*\.wav not found; check data_root"):
        data[0]


def test_non_finite_loss_names_run_step_and_batch(toy: Path) -> None:
    rows = read_manifests([toy / "xa" / "a.csv"], toy.parent / "audio")
    data = make_dataset(rows, "gender", ["female", "male"])
    brain = GenderBrain(
        modules={"encoder": _NaNEncoder(), "head": LinearHead(1, 2)},
        opt_class=lambda p: torch.optim.AdamW(p, lr=1e-3),
        hparams={"label_classes": ["female", "male"], "pool_layers": 1, "pooling": MaskedMeanPooling()},
        run_opts={"device": "cpu", "noprogressbar": True},
        run_name="nan-run",
    )
    with pytest.raises(NonFiniteLossError, match=r"run nan-run.*step 1; batch IDs \['xa_a_"):
        brain.fit(range(1, 2), data, train_loader_kwargs={"batch_size": 2})


def test_blocks_keep_their_pre_move_yaml_paths_and_config_identity():
    """The blocks moved into cltm_sb.recipe; README's old ``!new:cltm_sb.encoders...`` tags still
    load, the run function of an older plan.json is found, and the modules' new paths are hashed as
    the old ones (the move itself changed no config_hash)."""
    from cltm_sb.grid.plan import _MOVED_RUNNERS, DEFAULT_RUNNER
    from cltm_sb.results import config_hash

    hp = load_hyperpyyaml(
        "pooling: !new:cltm_sb.encoders.MaskedMeanPooling\nhead: !new:cltm_sb.heads.LinearHead [4, 2]\n"
    )
    assert isinstance(hp["pooling"], MaskedMeanPooling) and isinstance(hp["head"], LinearHead)
    assert _MOVED_RUNNERS["cltm_sb.runner:run_recipe"] == DEFAULT_RUNNER
    # The same configuration spelled with the old and the new module paths has one hash.
    old = {"pooling": {"tag": "!new:cltm_sb.encoders.MaskedMeanPooling", "value": {}}, "lr": 0.1}
    new = {"pooling": {"tag": "!new:cltm_sb.recipe.encoders.MaskedMeanPooling", "value": {}}, "lr": 0.1}
    assert config_hash(old) == config_hash(new) != config_hash({**new, "lr": 0.2})


def test_the_readme_blocks_example_runs(tiny_hubert: Path, toy: Path, tmp_path: Path) -> None:
    """README's "Blocks in your own recipe" runs as written, with its names bound to the toy corpus."""
    import contextlib
    import io
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Blocks in your own recipe", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    names = {"encoder_folder": str(tiny_hubert), "output_folder": str(tmp_path / "mine"),
             "prepared": str(toy), "data_root": str(toy.parent / "audio")}  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), names)  # noqa: S102 - the README's own example
    assert 0.0 <= float(printed.getvalue().strip().splitlines()[-1]) <= 1.0
    assert (tmp_path / "mine" / "train_log.txt").read_text().count("epoch: ") == 2
    assert any((tmp_path / "mine" / "save").glob("CKPT+*"))


class _MeanEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, wavs, lens):
        return [wavs[:, :, None] * self.w], lens


class _OrderBrain(GenderBrain):
    """Records the IDs of each training batch, by epoch."""

    def fit_batch(self, batch):
        self.order.setdefault(self._epoch, []).append(tuple(batch.id))
        return super().fit_batch(batch)


def test_dynamic_batches_change_each_epoch_and_a_resumed_run_draws_them_again(toy: Path) -> None:
    """SpeechBrain sets the epoch of its own samplers only: with dynamic batching every epoch
    after the first had one order, and a run resumed at epoch 2 trained on epoch 1's."""
    from cltm_sb.recipe.run import train_loader_options

    rows = read_manifests([toy / "xa" / "a.csv", toy / "xa" / "b.csv"], toy.parent / "audio")
    data = make_dataset(rows, "gender", ["female", "male"])
    hp = {"label_classes": ["female", "male"], "pool_layers": 1, "pooling": MaskedMeanPooling(),
          "train_logger": _NoLogger(), "seed": 3, "dynamic_batching": True,
          "train_dataloader_opts": {"batch_size": 1, "shuffle": True},
          "dynamic_batch_sampler": {"max_batch_length": 1.3, "num_buckets": 2, "shuffle": True,
                                    "batch_ordering": "random"}}  # fmt: skip

    def orders(epochs: range) -> dict:
        brain = _OrderBrain(modules={"encoder": _MeanEncoder(), "head": LinearHead(1, 2)},
                            opt_class=lambda p: torch.optim.SGD(p, lr=1e-3), hparams=hp,
                            run_opts={"device": "cpu", "noprogressbar": True})  # fmt: skip
        brain.order = {}
        brain.fit(epochs, data, train_loader_kwargs=train_loader_options(hp, data))
        return brain.order

    whole = orders(range(1, 4))
    assert whole[1] != whole[2] != whole[3] != whole[1]
    assert orders(range(2, 4)) == {2: whole[2], 3: whole[3]}


class _NoLogger:
    def log_stats(self, **kwargs) -> None:
        pass


def test_a_ddp_run_shuffles_with_its_seed(toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SpeechBrain's DDP sampler shuffled with torch's default seed 0, whatever the run's seed."""
    import socket

    import speechbrain as sb
    import torch.distributed as dist

    data = make_dataset(read_manifests([toy / "xa" / "a.csv"], toy.parent / "audio"), "gender", ["female", "male"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        seeds = []
        for seed in (3, 4):
            monkeypatch.setenv("SB_GLOBAL_SEED", str(seed))  # what seed_everything(seed) sets
            brain = GenderBrain(modules={"encoder": _MeanEncoder(), "head": LinearHead(1, 2)}, hparams={},
                                run_opts={"device": "cpu", "noprogressbar": True})  # fmt: skip
            brain.distributed_launch, brain.rank = True, 0  # as under torchrun
            brain.make_dataloader(data, sb.Stage.TRAIN, None, batch_size=2, shuffle=True)
            assert isinstance(brain.train_sampler, torch.utils.data.DistributedSampler)
            seeds.append(brain.train_sampler.seed)
        assert seeds == [3, 4]
    finally:
        dist.destroy_process_group()


def _build_on_rank(rank: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        if rank == 1:
            build_tiny_hubert(folder)
    finally:
        dist.destroy_process_group()


def test_a_ddp_worker_of_rank_1_builds_a_whole_tiny_hubert(tiny_hubert: Path, tmp_path: Path) -> None:
    """transformers saves on rank 0 only: rank 1 of a torchrun built a folder of
    preprocessor_config.json alone, which broke the cache and the run."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_build_on_rank, args=(port, str(tmp_path / "tiny")), nprocs=2, start_method="fork")
    assert sha256_file(tmp_path / "tiny" / "model.safetensors") == sha256_file(tiny_hubert / "model.safetensors")
    assert (tmp_path / "tiny" / "config.json").is_file()
