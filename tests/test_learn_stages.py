"""The fit-initial and train stages end to end: simulate → moments → fit-initial → train on the
tiny config for both 1D models, bit-identical resumes, lattice-based statistics (open chain RBM,
lattice RBM), config errors naming the field, divergence diagnostics through the CLI."""

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from dbdflow import cli, config, io, stages
from dbdflow.boltzmann import exact_moments
from dbdflow.dynamics import solve
from dbdflow.dynamics.train import model_from_functions

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"


def write_config(tmp: Path, name: str, edit=None) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    if edit:
        edit(cfg)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def simulate_all(cfg: Path, root: Path) -> dict[str, list[Path]]:
    exp = config.load(cfg)
    files = {}
    for split in exp.splits:
        files[split] = [
            root / "sims" / split / f"ic{ic}_b{b}.h5"
            for ic in range(exp.split(split).n_ics)
            for b in range(exp.n_batches(split))
        ]
        for f in files[split]:
            ic, b = (int(x[2:]) if x.startswith("ic") else int(x[1:]) for x in f.stem.split("_"))
            stages.simulate(cfg, split, ic, b, f)
        stages.moments(cfg, split, files[split], root / "moments" / f"{split}.h5")
    return files


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cfg = write_config(root, "tiny")
    return cfg, root, simulate_all(cfg, root)


@pytest.mark.parametrize("name", ["visible", "hidden"])
def test_fit_initial_and_train_end_to_end(tiny, name):
    cfg, root, _ = tiny
    exp = config.load(cfg)
    spec = exp.model(name)
    out = root / "models" / name
    for split in exp.splits:
        code = cli.main(
            [
                "fit-initial",
                *("--config", str(cfg), "--moments", str(root / "moments" / f"{split}.h5")),
                *("--model", name, "--split", split, "--out", str(out / f"initial_{split}.h5")),
            ]
        )
        assert code == 0
    init = io.read_initial(out / "initial_train.h5")
    mom = io.read_moments(root / "moments" / "train.h5")
    model = spec.build(exp)
    assert init["param_names"] == model.param_names and init["theta0"].shape == (3, 3)
    if name == "visible":  # generating parameters of each IC
        want = [[p[n] for n in model.param_names] for p in mom["attrs"]["ic_parameters"]]
        np.testing.assert_array_equal(init["theta0"], want)
    else:  # maximum likelihood at t0: exact model moments of the visible sites = the data's
        assert init["fit"]["converged"].all()
        for ic, theta in enumerate(init["theta0"]):
            got = exact_moments(model, theta)[0]
            assert got == pytest.approx(mom["mean"]["counts"][ic, 0, 0], rel=1e-7)
    assert io.read_initial(out / "initial_test.h5")["theta0"].shape == (2, 3)

    stages.train(cfg, root / "moments" / "train.h5", out / "initial_train.h5", name, out / "d.h5")
    dyn = io.read_dynamics(out / "d.h5")
    steps = exp.training.steps
    assert dyn["param_names"] == model.param_names and dyn["attrs"]["steps"] == steps
    assert dyn["log"]["step"].tolist() == list(range(steps))
    assert dyn["log"]["window_end"][-1] == 10 and dyn["log"]["window_start"][0] == 0
    assert np.all(np.isfinite(dyn["log"]["loss"])) and np.all(dyn["log"]["grad_norm"] > 0)
    assert dyn["theta"].shape == (3, 11, 3) and np.all(np.isfinite(dyn["theta"]))
    np.testing.assert_array_equal(dyn["theta"][:, 0], init["theta0"])
    fn = dyn["functions"][0]
    lo, hi = init["theta0"].min(axis=0), init["theta0"].max(axis=0)
    assert np.all(fn["lower"] <= lo) and np.all(fn["upper"] >= hi)  # automatic bounds
    assert dyn["u"].size == 3 * fn["u"].size and np.array_equal(dyn["u"][: fn["u"].size], fn["u"])
    assert (out / "d.checkpoint.h5").exists()
    # the file alone reproduces the training ICs' learned trajectories
    dyn_model = model_from_functions(dyn["functions"])
    attrs = dyn["attrs"]
    again = solve(
        dyn_model,
        dyn["u"],
        init["theta0"],
        10,
        attrs["dt"],
        scheme=attrs["scheme"],
        substeps=attrs["substeps"],
    )
    np.testing.assert_array_equal(again.theta, dyn["theta"])


def test_resume_continues_bit_identically(tiny, tmp_path):
    cfg, root, _ = tiny
    out = tmp_path / "models"
    stages.fit_initial(cfg, root / "moments" / "train.h5", "visible", "train", out / "i.h5")

    def variant(name, steps, rate=0.02):
        def edit(c):
            c["training"].update(steps=steps, checkpoint_every=4, learning_rate=rate)
            c["models"]["visible"]["dynamics"]["smoothness"] = 1e-6  # the dense penalty path

        return write_config(tmp_path, name, edit)

    args = (root / "moments" / "train.h5", out / "i.h5", "visible")
    stages.train(variant("full", 12), *args, out / "full.h5")
    stages.train(variant("half", 6), *args, out / "part.h5")
    assert io.read_checkpoint(out / "part.checkpoint.h5")["step"] == 6
    stages.train(variant("more", 12), *args, out / "part.h5", resume=True)
    full, part = io.read_dynamics(out / "full.h5"), io.read_dynamics(out / "part.h5")
    assert np.array_equal(full["u"], part["u"]) and np.array_equal(full["theta"], part["theta"])
    for key in ("loss", "grad_norm", "window_start", "excursions", "roughness"):
        assert np.array_equal(full["log"][key], part["log"][key])
    assert np.all(full["log"]["roughness"][1:] > 0)
    with pytest.raises(ValueError, match="checkpoint written for another config"):
        stages.train(variant("other", 12, rate=0.5), *args, out / "part.h5", resume=True)
    # the workflow's mode: a stale checkpoint is replaced by a fresh run's
    stages.train(variant("other", 12, rate=0.5), *args, out / "part.h5", resume="auto")
    fresh = io.read_dynamics(out / "part.h5")
    assert fresh["log"]["loss"].size == 12 and not np.array_equal(fresh["u"], full["u"])
    stages.train(variant("more", 12), *args, out / "again.h5", resume="auto")  # no checkpoint
    assert np.array_equal(io.read_dynamics(out / "again.h5")["u"], full["u"])


def test_checkpoint_of_other_training_code_is_not_continued(tiny, tmp_path, monkeypatch):
    """A checkpoint written by another version of the training code (dbdflow.dynamics,
    dbdflow.boltzmann) is refused on --resume and replaced in the workflow's mode: continuing
    it would give neither version's result."""
    cfg, root, _ = tiny
    out = tmp_path / "models"
    stages.fit_initial(cfg, root / "moments" / "train.h5", "visible", "train", out / "i.h5")

    def variant(name, steps):
        return write_config(
            tmp_path, name, lambda c: c["training"].update(steps=steps, checkpoint_every=4)
        )

    args = (root / "moments" / "train.h5", out / "i.h5", "visible")
    stages.train(variant("full", 8), *args, out / "full.h5")
    stages.train(variant("half", 4), *args, out / "part.h5")
    digest = stages.training_code_digest()
    assert len(digest) == 64 and digest == stages.training_code_digest()
    monkeypatch.setattr(stages, "training_code_digest", lambda: "0" * 64)  # "edited kernels"
    with pytest.raises(ValueError, match="version of the training code"):
        stages.train(variant("more", 8), *args, out / "part.h5", resume=True)
    stages.train(variant("more", 8), *args, out / "part.h5", resume="auto")  # from step 0
    part = io.read_dynamics(out / "part.h5")
    assert part["log"]["loss"].size == 8
    assert np.array_equal(part["u"], io.read_dynamics(out / "full.h5")["u"])
    # and the new checkpoint continues under the same code
    stages.train(variant("longer", 12), *args, out / "part.h5", resume=True)
    assert io.read_dynamics(out / "part.h5")["log"]["loss"].size == 12


def test_lattice_statistics_models(tmp_path):
    """An open chain RBM (bond ends need the lattices) and a 2D lattice RBM (receptive-field
    histograms, sampled asleep moments) run through both stages with the sims files."""

    def edit(c):
        c["lattice"] = {"shape": [6, 6], "boundary": "reflecting"}
        c["species"] = ["A", "B"]
        c["reactions"] = ["A + B -> 0 @ 0.5"]
        c["initial"] = {"kind": "counts", "counts": {"A": 8, "B": 8}}
        c["models"] = {
            "rbm": {
                "family": "lattice_rbm",
                "hidden_species": ["X", "Y"],
                "couple": {"A": "X", "B": "Y"},
                "initial": {
                    "method": "given",
                    "values": {"b_A": -1.0, "b_B": -1.0, "W_AX": 0, "W_BY": 0, "b_X": 0, "b_Y": 0},
                },
                "dynamics": {"coords": ["b_A", "b_B"], "spacing": 0.5},
                "asleep": {"method": "pcd", "sweeps": 2, "chains": 4},
            }
        }
        c["training"] = {"steps": 3, "learning_rate": 0.05, "checkpoint_every": 2}

    cfg = write_config(tmp_path, "lattice", edit)
    files = simulate_all(cfg, tmp_path)
    mom = tmp_path / "moments" / "train.h5"
    stages.fit_initial(cfg, mom, "rbm", "train", tmp_path / "i.h5")
    stages.train(cfg, mom, tmp_path / "i.h5", "rbm", tmp_path / "d.h5", sims_files=files["train"])
    ckpt = io.read_checkpoint(tmp_path / "d.checkpoint.h5")
    assert ckpt["asleep"]["chains"].shape == (3 * 11, 4, 2 * 36 + 1)  # every (ic, step) point
    assert io.read_dynamics(tmp_path / "d.h5")["log"]["loss"].size == 3

    # the fully visible lattice learns from the moments alone: its awake moments are the
    # recorded counts and pairs, no lattices needed
    def visible(c):
        edit(c)
        values = {"b_A": -1.0, "b_B": -1.0, "J_AA": 0.0, "J_AB": 0.0, "J_BB": 0.0}
        c["models"] = {
            "grid": {
                "family": "lattice",
                "initial": {"method": "given", "values": values},
                "dynamics": {"coords": ["b_A", "b_B"], "spacing": 0.5},
                "asleep": {"method": "pcd", "sweeps": 2, "chains": 4},
            }
        }

    cfg = write_config(tmp_path, "visible", visible)
    exp = config.load(cfg)
    spec = exp.models["grid"]
    mean = io.read_moments(mom)["mean"]
    awake = stages._awake(spec, spec.build(exp), {"mean": mean}, None, "test")
    np.testing.assert_array_equal(
        awake([1, 2], [0, 10], np.zeros((2, 5))),
        np.hstack([mean["counts"][[1, 2], [0, 10]], mean["pairs"][[1, 2], [0, 10]]]),
    )
    stages.fit_initial(cfg, mom, "grid", "train", tmp_path / "gi.h5")
    stages.train(cfg, mom, tmp_path / "gi.h5", "grid", tmp_path / "gd.h5")
    trained = io.read_dynamics(tmp_path / "gd.h5")
    assert trained["log"]["loss"].size == 3

    # prior mean_field: with 0 steps F is the prior's interpolant (the biases' mean-field
    # rates at the vertices, couplings 0); training moves on from it
    from dbdflow.evaluate.maxent import MeanFieldPrior

    def with_prior(steps):
        def edit_prior(c):
            visible(c)
            c["models"]["grid"]["dynamics"]["prior"] = "mean_field"
            c["training"]["steps"] = steps

        return write_config(tmp_path, f"mf{steps}", edit_prior)

    for steps in (0, 3):
        stages.train(with_prior(steps), mom, tmp_path / "gi.h5", "grid", tmp_path / f"m{steps}.h5")
    zero, three = (io.read_dynamics(tmp_path / f"m{s}.h5") for s in (0, 3))
    prior = MeanFieldPrior(
        spec.param_names, exp.species, exp.network, exp.lattice, exp.dt, exp.semantics
    )
    dyn_model = model_from_functions(zero["functions"])
    vertices = dyn_model.grids[0].vertices()
    theta = np.zeros((vertices.shape[0], 5))
    theta[:, :2] = vertices
    np.testing.assert_allclose(
        dyn_model.rhs(zero["u"], theta), prior.rhs(theta), rtol=1e-10, atol=1e-10
    )
    assert np.abs(prior.rhs(theta)[:, :2]).max() > 1.0  # A + B -> 0 at p = 0.5 moves b
    assert not np.array_equal(three["u"], zero["u"])
    assert not np.array_equal(three["u"], trained["u"])

    def open_chain(c):
        c["lattice"]["boundary"] = "reflecting"
        c["models"] = {"hidden": c["models"]["hidden"]}
        c["models"]["hidden"]["initial"]["l2"] = 1e-3  # 6 lattices: the MLE may be at infinity

    cfg = write_config(tmp_path, "open", open_chain)
    files = simulate_all(cfg, tmp_path / "open")
    mom = tmp_path / "open" / "moments" / "train.h5"
    with pytest.raises(ValueError, match="needs the simulation files"):
        stages.fit_initial(cfg, mom, "hidden", "train", tmp_path / "oi.h5")
    stages.fit_initial(cfg, mom, "hidden", "train", tmp_path / "oi.h5", files["train"])
    assert io.read_initial(tmp_path / "oi.h5")["fit"]["converged"].all()
    stages.train(cfg, mom, tmp_path / "oi.h5", "hidden", tmp_path / "od.h5", False, files["train"])


def test_divergence_is_reported_by_the_cli(tiny, tmp_path, capsys):
    cfg, root, _ = tiny
    init = tmp_path / "i.h5"
    stages.fit_initial(cfg, root / "moments" / "train.h5", "visible", "train", init)
    theta0 = io.read_initial(init)["theta0"]
    limit = float(np.abs(theta0).max()) * 0.99  # θ(t0) itself is beyond the limit

    def edit(c):
        c["training"]["max_abs_theta"] = limit

    bad = write_config(tmp_path, "bad", edit)
    code = cli.main(
        [
            "train",
            *("--config", str(bad), "--moments", str(root / "moments" / "train.h5")),
            *("--initial", str(init), "--model", "visible", "--out", str(tmp_path / "d.h5")),
        ]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert "training diverged: training step 0: θ diverged:" in err and "IC" in err
    assert not (tmp_path / "d.h5").exists()


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (
            lambda c: c["models"]["visible"]["dynamics"].update(coords=["b_A", "W_AX"]),
            "models.visible.dynamics.coords",
            "'W_AX' is not a parameter",
        ),
        (
            lambda c: c["models"]["visible"]["dynamics"].update(spacing=[0.5, 0.5]),
            "models.visible.dynamics.spacing",
            "one per coordinate",
        ),
        (
            lambda c: c["models"]["hidden"]["initial"].update(method="generating"),
            "models.hidden.initial.method",
            "family chain",
        ),
        (
            lambda c: c["models"]["visible"].update(
                terms=["b", "J"], dynamics={"coords": ["b_A", "J_AA"], "spacing": 0.5}
            ),
            "models.visible.initial.method",
            "['K_AAA']",
        ),
        (
            lambda c: c["models"]["visible"].update(
                asleep={"method": "exact"}, family="lattice_rbm"
            ),
            "models.visible.hidden_species",
            "required",
        ),
        (lambda c: c["training"]["window"].update(start=6), "training.window.start", "<= 5"),
        (
            lambda c: c["training"].update(learning_rate={"default": 1, "groups": {"Q": 2}}),
            "training.learning_rate.groups.Q",
            "matches no parameter",
        ),
        (lambda c: c["training"].update(batch_ics=4), "training.batch_ics", "exceeds"),
        (
            lambda c: (
                c["lattice"].update(boundary="reflecting"),
                c["storage"].update(states=False),
            ),
            "storage.states",
            "needs the stored lattices",
        ),
    ],
)
def test_config_errors_name_the_field(tmp_path, edit, field, words):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["storage"] = {"states": True}
    edit(cfg)
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(cfg, source="x.yaml")
    assert f"x.yaml: {field}: " in str(err.value) and words in str(err.value)


def test_learning_rate_groups():
    cfg = yaml.safe_load(TINY.read_text())
    cfg["training"]["learning_rate"] = {"default": 0.1, "groups": {"b": 0.8, "b_X": 0.3, "W": 0.05}}
    exp = config.from_dict(cfg)
    assert exp.training.rates(("b_A", "W_AX", "b_X")) == [0.8, 0.05, 0.3]
    assert exp.training.rates(("b_A", "J_AA", "K_AAA")) == [0.8, 0.1, 0.1]


@pytest.mark.parametrize("name", ["visible", "hidden"])
def test_maxent_prior_is_where_training_starts(tiny, tmp_path, name):
    """``prior: maxent`` (chain, and chain RBM through its marginal): with 0 steps the stored F
    is the closure's Hermite interpolant (exact at the vertices), and training moves on."""
    from dbdflow.evaluate.maxent import prior_closure

    cfg, root, _ = tiny
    out = tmp_path / "models"
    stages.fit_initial(cfg, root / "moments" / "train.h5", name, "train", out / "i.h5")

    def variant(steps, substeps=1):
        def edit(c):
            c["training"]["steps"] = steps
            c["models"][name]["dynamics"].update(prior="maxent", smoothness=1e-6, substeps=substeps)

        return write_config(tmp_path, f"prior{steps}_{substeps}", edit)

    args = (root / "moments" / "train.h5", out / "i.h5", name)
    with pytest.raises(config.ConfigError, match=r"dynamics\.substeps: .* unstable") as err:
        stages.train(variant(4), *args, out / "unstable.h5")  # p = 0.2, data step 0.02: stiff
    assert not (out / "unstable.h5").exists()
    need = int(str(err.value).rsplit(">= ", 1)[1])
    stages.train(variant(0, need), *args, out / "zero.h5")
    stages.train(variant(4, need), *args, out / "four.h5")
    zero, four = io.read_dynamics(out / "zero.h5"), io.read_dynamics(out / "four.h5")
    exp = config.load(variant(0, need))
    spec = exp.model(name)
    closure = prior_closure(
        spec.family, spec.param_names, exp.species, exp.network, exp.lattice, exp.dt
    )
    dyn_model = model_from_functions(zero["functions"])
    vertices = dyn_model.grids[0].vertices()
    np.testing.assert_allclose(
        dyn_model.rhs(zero["u"], vertices), closure.rhs(vertices), rtol=1e-10, atol=1e-8
    )
    assert not np.array_equal(four["u"], zero["u"])
    assert four["log"]["roughness"][0] == 0.0 and four["log"]["roughness"][-1] > 0.0


def test_cross_validation_holds_out_train_ics(tiny, tmp_path, caplog):
    """3 folds of the 3 train ICs. With 0 training steps F = 0 and θ stays at θ(t0), so each
    held-out IC's RMSE is that of the exact moments at its θ(t0) against its data at all times
    (computed here directly); a trained model's table has the same layout, finite values."""
    import pandas as pd

    from dbdflow.evaluate import metrics, predictions

    cfg, root, _ = tiny
    out = tmp_path / "models"
    stages.fit_initial(cfg, root / "moments" / "train.h5", "visible", "train", out / "i.h5")
    frozen = write_config(tmp_path, "frozen", lambda c: c["training"].update(steps=0))
    args = (root / "moments" / "train.h5", out / "i.h5", "visible")
    assert (
        cli.main(
            [
                "cross-validate",
                "--config",
                str(frozen),
                "--moments",
                str(args[0]),
                "--initial",
                str(args[1]),
                "--model",
                "visible",
                "--folds",
                "3",
                "--out",
                str(tmp_path / "cv.tsv"),
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "cv.tsv", sep="\t", dtype={"fold": str})
    assert table["fold"].tolist() == ["0", "0", "1", "1", "2", "2", "mean", "mean"]
    assert table["set"].tolist() == ["held_out", "fitted"] * 4
    exp, mom = config.load(frozen), io.read_moments(args[0])
    model, theta0 = exp.model("visible").build(exp), io.read_initial(args[1])["theta0"]
    for ic in range(3):
        theta = np.repeat(theta0[ic : ic + 1, None, :], mom["times"].size, axis=1)
        frame = metrics.tidy(
            "visible",
            mom["times"],
            {k: v[ic : ic + 1] for k, v in mom["mean"].items()},
            {k: v[ic : ic + 1] for k, v in mom["stderr"].items()},
            predictions.exact_observables(model, theta),
            None,
            exp.species,
            metrics.evaluated_observables(1),
        )
        want = metrics.summarize(frame)["rmse_by_order"]["visible"]
        row = table[(table["fold"] == str(ic)) & (table["set"] == "held_out")].iloc[0]
        for order in "1234":
            assert row[f"rmse_{order}"] == pytest.approx(want[order], rel=1e-5)
    with caplog.at_level(logging.INFO, logger="dbdflow"):
        stages.cross_validate(cfg, *args, tmp_path / "trained.tsv", folds=3)
    trained = pd.read_csv(tmp_path / "trained.tsv", sep="\t")
    assert trained.shape == table.shape and np.isfinite(trained.filter(like="rmse")).all().all()
    # every fold's RMSE is logged as soon as it is known (long runs show progress)
    last = trained[(trained["fold"] == "2") & (trained["set"] == "held_out")].iloc[0]
    line = next(r.getMessage() for r in caplog.records if "fold 3/3, held-out" in r.getMessage())
    assert f"'1': {round(last['rmse_1'], 4)}" in line
    with pytest.raises(ValueError, match="folds must be"):
        stages.cross_validate(cfg, *args, tmp_path / "x.tsv", folds=4)
    assert not (tmp_path / "x.tsv").exists()
