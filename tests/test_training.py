"""The training loop: determinism, resume, EMA, clipping, divergence, Ctrl-C, metrics, grids and run dirs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import scorekit
from scorekit.errors import CheckpointError, DivergenceError, OptionError
from scorekit.networks.mlp import MLP
from scorekit.targets import Gaussian, TargetScoreNetwork
from scorekit.training import (
    EMA,
    ModelConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    build_model,
    heldout_loss,
    load_checkpoint,
    load_model_from_checkpoint,
    new_run_dir,
    split_holdout,
    train,
)

MU, STD = 1.0, 0.5


def gaussian(n: int = 96, seed: int = 0) -> torch.Tensor:
    """2-D data from N(MU, STD^2 I)."""
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * STD + MU


def tiny(**options) -> scorekit.ScoreModel:
    return scorekit.compose(network_options={"hidden": 16, **options})


def config(**overrides) -> TrainConfig:
    defaults = dict(n_iters=12, batch_size=32, checkpoint_every=6, sample_every=0, eval_every=0, log_every=3)
    return TrainConfig(**{**defaults, **overrides})


def run(tmp_path, name, model=None, data=None, cfg=None, **kwargs):
    model = model if model is not None else tiny()
    result = train(model, gaussian() if data is None else data, cfg or config(), tmp_path / name, progress=False, **kwargs)
    return model, result


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_optimizer(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    for i, state in a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["state"][i][key]), (i, key)


# --- determinism and resume -------------------------------------------------------------------


def test_same_seed_gives_bit_identical_weights(tmp_path):
    a, _ = run(tmp_path, "a")
    b, _ = run(tmp_path, "b")
    c, _ = run(tmp_path, "c", cfg=config(seed=1))
    assert_same_state(a.state_dict(), b.state_dict())
    assert not torch.equal(a.network.body[0].weight, c.network.body[0].weight)


def test_resume_continues_bit_identically(tmp_path):
    # 96 examples in batches of 32: the split at step 7 falls inside an epoch
    cfg = config(n_iters=14, checkpoint_every=7, ema_decay=0.9, grad_clip=5.0)
    straight, _ = run(tmp_path, "straight", cfg=cfg)
    first, half = run(tmp_path, "split", cfg=config(n_iters=7, checkpoint_every=7, ema_decay=0.9, grad_clip=5.0))
    assert half.step == 7
    resumed, result = run(tmp_path, "split", cfg=cfg)  # a fresh (unsized) model, continued from last.pt
    assert result.step == 14
    assert_same_state(straight.state_dict(), resumed.state_dict())
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert_same_state(a["ema"]["shadow"], b["ema"]["shadow"])
    assert_same_optimizer(a["optimizer"], b["optimizer"])
    assert torch.equal(a["rng"]["train"], b["rng"]["train"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 14


def test_resume_truncates_metrics_logged_after_the_checkpoint(tmp_path):
    run(tmp_path, "r", cfg=config(n_iters=6, checkpoint_every=6))
    metrics = tmp_path / "r" / "metrics.jsonl"
    with metrics.open("a") as f:  # what a run killed after step 6 had logged
        f.write('{"kind": "train", "step": 9, "loss": 1.0}\n{"kind": "tra')
    run(tmp_path, "r", cfg=config(n_iters=6, checkpoint_every=6))  # resume with nothing to do
    run(tmp_path, "r", cfg=config(n_iters=12, checkpoint_every=6))
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [3, 6, 9, 12]


def test_dataloader_workers_see_the_same_batches(tmp_path):
    a, _ = run(tmp_path, "a", cfg=config(n_iters=4, num_workers=0))
    b, _ = run(tmp_path, "b", cfg=config(n_iters=4, num_workers=1))
    assert_same_state(a.state_dict(), b.state_dict())


def test_map_style_dataset_with_labels(tmp_path):
    data = torch.utils.data.TensorDataset(gaussian(), torch.zeros(96))
    a, _ = run(tmp_path, "a", data=data, cfg=config(n_iters=3))
    b, _ = run(tmp_path, "b", cfg=config(n_iters=3))
    assert_same_state(a.state_dict(), b.state_dict())


def test_refuses_to_overwrite_a_run(tmp_path):
    run(tmp_path, "r", cfg=config(n_iters=2))
    with pytest.raises(CheckpointError, match="already holds a run"):
        run(tmp_path, "r", cfg=config(n_iters=2), resume=False)


def test_resuming_a_different_model_is_an_error(tmp_path):
    run(tmp_path, "r", cfg=config(n_iters=2))
    with pytest.raises(CheckpointError, match="run of"):
        run(tmp_path, "r", model=scorekit.compose(estimator="ssm"), cfg=config(n_iters=4))


# --- EMA and gradient clipping ----------------------------------------------------------------


def test_ema_equals_the_hand_computed_average(tmp_path):
    model = tiny(dim=2)  # sized at compose: w0 exists before training
    w0 = {k: v.clone() for k, v in model.named_parameters()}
    seen = []
    run(tmp_path, "r", model=model, cfg=config(n_iters=2, ema_decay=0.5),
        callback=lambda info: seen.append({k: v.detach().clone() for k, v in model.named_parameters()}))
    w1, w2 = seen
    ema = load_checkpoint(tmp_path / "r" / "last.pt")["ema"]["shadow"]
    for name in w0:
        expected = 0.5 * (0.5 * w0[name] + 0.5 * w1[name]) + 0.5 * w2[name]
        assert torch.equal(ema[name], expected), name
        assert not torch.equal(ema[name], w2[name])


def test_ema_apply_restores_the_raw_weights():
    net = nn.Linear(2, 2)
    ema = EMA(net, 0.9)
    raw = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    with ema.apply(net):
        assert torch.allclose(net.weight, raw + 0.1)
    assert torch.equal(net.weight, raw + 1.0)


def _first_moment(run_dir) -> dict:
    return load_checkpoint(run_dir / "last.pt")["optimizer"]["state"]


def test_grad_clip_scales_the_gradient_to_the_bound(tmp_path):
    clip, norms = 1e-3, []
    run(tmp_path, "free", cfg=config(n_iters=1))
    run(tmp_path, "clipped", cfg=config(n_iters=1, grad_clip=clip), callback=lambda info: norms.append(info.grad_norm))
    norm = float(norms[0])
    assert norm > 10 * clip  # the bound is active
    free, clipped = _first_moment(tmp_path / "free"), _first_moment(tmp_path / "clipped")
    # after one Adam step exp_avg = (1 - beta1) * grad: the clipped run saw grad * clip / (norm + 1e-6)
    for i in free:
        torch.testing.assert_close(clipped[i]["exp_avg"], free[i]["exp_avg"] * (clip / (norm + 1e-6)))
    total = math.sqrt(sum(float(s["exp_avg"].pow(2).sum()) for s in clipped.values())) / (1 - 0.9)
    assert total == pytest.approx(clip, rel=1e-4)


# --- learning ----------------------------------------------------------------------------------


def test_dsm_loss_goes_down_on_a_gaussian(tmp_path):
    data, holdout = gaussian(512), gaussian(256, seed=1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = tiny(dim=2, hidden=32)
    before = heldout_loss(model, holdout)["heldout_loss"]
    # the exact score of N(MU, STD^2 I) perturbed by N(0, sigma^2 I): the minimiser of Eq. 6
    exact = TargetScoreNetwork(Gaussian([MU, MU], STD**2 * torch.eye(2)))
    optimum = heldout_loss(scorekit.compose(network=exact), holdout)["heldout_loss"]
    run(tmp_path, "r", model=model, data=data, cfg=config(n_iters=200, batch_size=64, checkpoint_every=200))
    after = heldout_loss(model, holdout)["heldout_loss"]
    # the same fixed noise for all three, so the gaps are not blurred by Monte Carlo error; the untrained
    # net sits ~0.4 above the optimum, and 200 Adam steps at lr 1e-3 close at least 3/4 of that gap
    # (seeded: measured ~0.96 of it)
    assert before - optimum > 0.2
    assert after - optimum < 0.25 * (before - optimum)


# --- monitoring ---------------------------------------------------------------------------------


def image_run_config(**train) -> RunConfig:
    return RunConfig(
        model=ModelConfig(network_options={"hidden": 16}, sampler_options={"steps_per_level": 2}),
        sample=SampleConfig(grid_size=4),
        train=config(**train),
    )


def test_metrics_grids_and_a_reproducible_heldout_loss(tmp_path):
    images = torch.rand(80, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data, holdout = split_holdout(images, 0.2)
    rc = image_run_config(n_iters=4, sample_every=2, eval_every=2, log_every=2, checkpoint_every=2)
    model = build_model(rc)
    result = train(model, data, rc.train, tmp_path / "r", run_config=rc, holdout=holdout, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    train_lines = [m for m in lines if m["kind"] == "train"]
    evals = [m for m in lines if m["kind"] == "eval"]
    assert [m["step"] for m in train_lines] == [2, 4] and [m["step"] for m in evals] == [2, 4]
    assert {"loss", "lr", "it_per_s"} <= train_lines[0].keys() and len(evals[0]["heldout_loss_per_level"]) == 10
    for step in (2, 4):
        png = (tmp_path / "r" / f"grid_{step}.png").read_bytes()
        assert png.startswith(b"\x89PNG")
    again = heldout_loss(model, holdout, batch_size=rc.train.batch_size)
    assert again == heldout_loss(model, holdout, batch_size=rc.train.batch_size)
    assert again["heldout_loss"] == evals[-1]["heldout_loss"] == result.heldout_loss


def test_no_grids_for_non_image_data(tmp_path):
    run(tmp_path, "r", cfg=config(n_iters=2, sample_every=1))
    assert not list((tmp_path / "r").glob("grid_*"))


def test_checkpoint_hook_and_best_checkpoint(tmp_path):
    scores = {3: 3.0, 6: 1.0, 9: 2.0}
    calls = []

    def hook(step, model, run_dir):
        calls.append((step, model.training, run_dir))
        return {"score": scores[step]}

    _, result = run(tmp_path, "r", cfg=config(n_iters=9, checkpoint_every=3), on_checkpoint=hook,
                    best_metric="score", keep_all=True)
    assert [c[0] for c in calls] == [3, 6, 9] and not any(c[1] for c in calls)
    assert result.best == {"metric": "score", "value": 1.0, "step": 6}
    assert load_checkpoint(tmp_path / "r" / "best.pt")["step"] == 6
    assert sorted(p.name for p in (tmp_path / "r").glob("ckpt_*.pt")) == ["ckpt_3.pt", "ckpt_6.pt", "ckpt_9.pt"]


# --- failures --------------------------------------------------------------------------------------


class Faulty(nn.Module):
    """An MLP that can be told to return inf, or to be interrupted, on its next forward."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = MLP(hidden=16, sigmas=scorekit.geometric_sigmas(1.0, 0.01, 10))  # sized (seeded) by train()
        self.fault: str | None = None

    def forward(self, x, sigma):
        if self.fault == "interrupt":
            raise KeyboardInterrupt
        out = self.mlp(x, sigma)
        return out * math.inf if self.fault == "inf" else out


def faulty_model() -> tuple[scorekit.ScoreModel, Faulty]:
    net = Faulty()
    return scorekit.compose(network=net), net


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model, net = faulty_model()
    good = {}

    def at_step(info):
        if info.step == 5:
            good.update({k: v.clone() for k, v in model.state_dict().items()})
        if info.step == 7:
            net.fault = "inf"

    with pytest.raises(DivergenceError, match=r"diverged at step 8.*last good checkpoint.*last\.pt.*step 5"):
        run(tmp_path, "r", model=model, cfg=config(checkpoint_every=5), callback=at_step)
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["step"] == 5
    assert_same_state(ckpt["model"], good)
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["kind"] == "diverged"


def test_a_huge_learning_rate_is_reported_as_divergence(tmp_path):
    with pytest.raises(DivergenceError, match="Lower TrainConfig.lr"):
        run(tmp_path, "r", cfg=config(lr=1e30, n_iters=50, checkpoint_every=1))
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.parametrize("where", ["callback", "forward"])
def test_ctrl_c_saves_the_last_completed_step_and_resumes_exactly(tmp_path, where):
    model, net = faulty_model()

    def at_step(info):
        if info.step == 7:
            if where == "callback":
                raise KeyboardInterrupt
            net.fault = "interrupt"  # in the middle of step 8: its draws must not reach the checkpoint

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "split", model=model, cfg=config(checkpoint_every=5), callback=at_step)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 7
    net.fault = None
    resumed, _ = run(tmp_path, "split", model=model, cfg=config(checkpoint_every=5))
    straight, _ = run(tmp_path, "straight", model=faulty_model()[0], cfg=config(checkpoint_every=5))
    assert_same_state(resumed.state_dict(), straight.state_dict())


# --- building, loading and options ---------------------------------------------------------------


def test_load_model_from_checkpoint_rebuilds_the_composition(tmp_path):
    rc = image_run_config(n_iters=3, ema_decay=0.5)
    model = build_model(rc)
    result = train(model, gaussian(), rc.train, tmp_path / "r", run_config=rc, progress=False)
    raw, stored = load_model_from_checkpoint(tmp_path / "r" / "last.pt", ema=False)
    assert stored == rc and raw.names == model.names and not raw.training
    assert_same_state(raw.state_dict(), model.state_dict())
    averaged, _ = load_model_from_checkpoint(tmp_path / "r" / "last.pt")  # use_ema=True by default
    assert_same_state(averaged.state_dict(), result.ema.weights(model))


def test_build_model_is_deterministic():
    rc = RunConfig(model=ModelConfig(network_options={"dim": 2, "hidden": 8}))
    assert_same_state(build_model(rc).state_dict(), build_model(rc).state_dict())


def test_run_config_must_describe_the_model(tmp_path):
    rc = RunConfig(model=ModelConfig(estimator="ssm"), train=config())
    with pytest.raises(OptionError, match="estimator='dsm'"):
        train(tiny(), gaussian(), rc.train, tmp_path / "r", run_config=rc, progress=False)


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path):
    images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    _, result = run(tmp_path, "r", data=images, cfg=config(n_iters=2, batch_size=16, bf16=True, channels_last=True))
    assert result.step == 2 and math.isfinite(result.loss)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(OptionError, match="CUDA is not available"):
        run(tmp_path, "r", cfg=config(device="cuda"))


def test_too_small_a_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(scorekit.DataError, match="fewer than batch_size"):
        run(tmp_path, "r", data=gaussian(8))


def test_new_run_dir_never_reuses_a_directory(tmp_path):
    dirs = [new_run_dir("toy", root=tmp_path) for _ in range(5)]
    assert len(set(dirs)) == 5 and all(d.is_dir() and d.name.startswith("toy-") for d in dirs)
    with pytest.raises(ValueError, match="path separators"):
        new_run_dir("../escape", root=tmp_path)


def test_ema_warmup_forgets_the_initial_weights_fast():
    """With warm-up, update n uses min(decay, (1 + n) / (10 + n)): 0.1 first, then 2/11, ..."""
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = EMA(net, 0.999, warmup=True)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)
    assert ema.shadow["weight"].item() == pytest.approx(0.9)  # 0.1 * 0 + 0.9 * 1
    ema.update(net)
    assert ema.shadow["weight"].item() == pytest.approx(1 - 0.1 * 2 / 11)
    plain = EMA(torch.nn.Linear(1, 1, bias=False), 0.999)
    assert plain.current_decay() == 0.999
    restored = EMA(net, 0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.warmup and restored.current_decay() == pytest.approx(3 / 12)


def test_heldout_loss_is_the_dsm_estimator_called_at_each_level():
    """Eq. 6 held out: DSM with lambda = sigma^2 called on model.score at each level, noise seeded with seed + level."""
    from scorekit.estimators import DenoisingScoreMatching
    from scorekit.training.monitor import HELDOUT_SEED

    torch.manual_seed(0)
    model = tiny(dim=2)
    holdout = gaussian(10, seed=3)
    values = heldout_loss(model, holdout, batch_size=4)
    dsm, by_hand = DenoisingScoreMatching(weighting="sigma2"), []
    for i, sigma in enumerate(model.sigmas):
        generator, total = torch.Generator().manual_seed(HELDOUT_SEED + i), torch.zeros((), dtype=torch.float64)
        for start in range(0, 10, 4):
            with torch.no_grad():
                losses = dsm(model.score, holdout[start:start + 4], sigmas=sigma.reshape(1), generator=generator)
                total += losses.double().sum()
        by_hand.append(float(total) / 10)
    assert values["heldout_loss_per_level"] == by_hand
    assert values["heldout_loss"] == sum(by_hand) / len(by_hand)


def test_heldout_loss_checks_its_data_and_reports_divergence():
    from scorekit.errors import DataError

    bad = gaussian(6)
    bad[4, 1] = float("nan")
    with pytest.raises(DataError, match=r"held-out batch contains NaN or inf in examples \[0\]"):
        heldout_loss(tiny(dim=2), bad, batch_size=4)  # examples counted within the batch

    class Inf(nn.Module):
        def forward(self, x, sigma):
            return torch.full_like(x, float("inf"))

    with pytest.raises(DivergenceError, match="held-out loss at sigma 1 is inf"):
        heldout_loss(scorekit.compose(network=Inf()), gaussian(6))
