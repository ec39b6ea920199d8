from pathlib import Path

import pytest
import yaml

from dbdflow import config

ROOT = Path(__file__).resolve().parents[1]


def base() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_loads_with_defaults_filled():
    exp = config.load(ROOT / "config" / "config.yaml")
    assert exp.lattice.shape == (200,)
    assert exp.species == ("A",)
    assert exp.n_records == exp.n_steps // exp.record_every + 1
    cfg = base()
    cfg["splits"]["train"] = {"n_ics": 3, "trajectories": 45}
    exp = config.from_dict(cfg)
    assert exp.n_batches("train") == 3  # batches of 20, 20 and 5
    assert list(exp.batch_trajectories("train", 1)) == list(range(20, 40))
    assert list(exp.batch_trajectories("train", 2)) == list(range(40, 45))
    minimal = {k: v for k, v in base().items() if k not in ("storage", "batch_size", "semantics")}
    exp = config.from_dict(minimal)
    assert exp.batch_size == 50 and exp.semantics == "standard" and exp.store_states


def test_shipped_configs_all_load():
    for path in sorted((ROOT / "config").rglob("*.yaml")):
        config.load(path)


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda c: c["lattice"].update(boundary="circular"), "lattice.boundary", "periodic"),
        (lambda c: c.update(dt=-1), "dt", "0"),
        (lambda c: c.update(colour="red"), "(top level)", "allowed keys"),
        (lambda c: c["splits"]["train"].update(n_ics=0), "splits.train.n_ics", "minimum"),
        (lambda c: c.update(reactions=["A + A -> 0 @ 1.5"]), "reactions", "A + A -> 0 @ 1.5"),
        (lambda c: c.update(reactions=["A + Q -> 0 @ 0.5"]), "reactions", "A + Q -> 0 @ 0.5"),
        (lambda c: c.update(record_every=7), "record_every", "multiple"),
        (lambda c: c["initial"]["params"].update(Q=1.0), "initial.params.Q", "allowed"),
        (lambda c: c["initial"].update(kind="counts"), "initial.params", "not used"),
        (lambda c: c.update(initial={"kind": "counts"}), "initial.counts", "required"),
        (
            lambda c: c.update(initial={"kind": "counts", "counts": {"A": 500}}),
            "initial.counts",
            "exceed",
        ),
        (
            lambda c: c.update(initial={"kind": "density", "density": {"B": 0.5}}),
            "initial.density",
            "unknown species",
        ),
        (lambda c: c["lattice"].update(shape=[1, 2, 3, 4]), "lattice.shape", "long"),
        (
            lambda c: c["models"].update(pair=c["models"]["visible"]),
            "models.pair",
            "closure baseline",
        ),
        (
            lambda c: c["models"]["visible"].update(training={"learning_rat": 0.1}),
            "models.visible.training",
            "learning_rat",
        ),
        (
            lambda c: c["models"]["visible"].update(training={"steps": -1}),
            "models.visible.training.steps",
            "minimum",
        ),
        (
            lambda c: c["models"]["visible"]["dynamics"].update(prior="magic"),
            "models.visible.dynamics.prior",
            "maxent",
        ),
        (
            lambda c: c["models"].update(
                rbm={
                    "family": "lattice_rbm",
                    "hidden_species": ["X"],
                    "couple": {"A": "X"},
                    "initial": {"method": "fit"},
                    "dynamics": {
                        "coords": ["b_A", "W_AX", "b_X"],
                        "spacing": 0.5,
                        "prior": "maxent",
                    },
                }
            ),
            "models.rbm.dynamics.prior",
            "family chain or chain_rbm",
        ),
        (
            lambda c: c["models"].update(
                grid={
                    "family": "lattice",
                    "terms": ["b"],
                    "dynamics": {"coords": ["b_A"], "spacing": 0.5},
                }
            ),
            "models.grid.terms",
            "only used by family chain",
        ),
        (
            lambda c: c["models"].update(
                grid={
                    "family": "lattice",
                    "asleep": {"method": "exact"},
                    "dynamics": {"coords": ["b_A"], "spacing": 0.5},
                }
            ),
            "models.grid.asleep.method",
            "exact moments need",
        ),
        (
            lambda c: c["models"]["hidden"]["dynamics"].update(prior="mean_field"),
            "models.hidden.dynamics.prior",
            "fully visible model (family chain or lattice), not 'chain_rbm'",
        ),
        (
            lambda c: c["models"]["visible"]["dynamics"].update(
                prior="mean_field", coords=["J_AA", "K_AAA"], margin=1.0
            ),
            "models.visible.dynamics.prior",
            "every bias ['b_A']",
        ),
        (
            lambda c: c["models"]["hidden"]["dynamics"].update(
                prior="maxent", coords=["b_A", "W_AX"], spacing=0.5, margin=1.0
            ),
            "models.hidden.dynamics.prior",
            "all parameters",
        ),
        (
            lambda c: c["models"]["visible"]["dynamics"].update(
                prior="maxent", coords=["b_A", "J_AA"], margin=1.0
            ),
            "models.visible.dynamics.prior",
            "all parameters",
        ),
        (
            lambda c: (
                c["models"]["visible"]["dynamics"].update(prior="maxent"),
                c.update(reactions=["A -> A + A @ 1.0"]),
            ),
            "models.visible.dynamics.prior",
            "birth",
        ),
    ],
)
def test_bad_fields_are_named(tmp_path, edit, field, words):
    cfg = base()
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert str(path) in message and field in message and words in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")
    (tmp_path / "x.yaml").write_text("lattice: [unclosed")
    with pytest.raises(config.ConfigError, match=r"x\.yaml: not valid YAML"):
        config.load(tmp_path / "x.yaml")


def test_lattice_family_is_the_fully_visible_model_on_any_lattice():
    cfg = base()
    cfg["lattice"] = {"shape": [4, 5], "boundary": "reflecting"}
    cfg["species"] = ["A", "B"]
    cfg["reactions"] = ["A + B -> 0 @ 0.5"]
    cfg["initial"] = {"kind": "counts", "counts": {"A": 5, "B": 5}}
    cfg["models"] = {
        "grid": {"family": "lattice", "dynamics": {"coords": ["b_A", "b_B"], "spacing": 0.5}}
    }
    exp = config.from_dict(cfg)
    spec = exp.models["grid"]
    assert spec.param_names == ("b_A", "b_B", "J_AA", "J_AB", "J_BB")
    assert spec.asleep.method == "random" and not spec.needs_states  # awake moments are data
    model = spec.build(exp)
    assert model.family == "lattice" and model.shape == (4, 5) and model.n_sites == 20
    assert spec.dynamics.prior == "none"
    cfg["models"]["grid"]["dynamics"]["prior"] = "mean_field"  # any reactions, F over biases
    assert config.from_dict(cfg).models["grid"].dynamics.prior == "mean_field"


def test_a_model_overrides_training_keys_and_its_view_carries_them():
    cfg = base()
    cfg["models"]["visible"]["training"] = {"learning_rate": 0.002, "steps": 300}
    exp = config.from_dict(cfg)
    own, shared = exp.training_for("visible"), exp.training_for("hidden")
    assert (own.learning_rate, own.steps) == (0.002, 300)
    assert (shared.learning_rate, shared.steps) == (exp.training.learning_rate, exp.training.steps)
    assert own.window == shared.window  # inherited
    view = exp.view("visible")
    assert "training" not in view["models"]["visible"] and view["training"]["steps"] == 300
    assert config.from_dict(view).training == own
    with pytest.raises(config.ConfigError, match="unknown"):
        exp.training_for("unknown")
