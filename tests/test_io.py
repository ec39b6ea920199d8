import h5py
import numpy as np
import pytest

from dbdflow import io


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), io.create(target, "sims") as f:
        f.create_dataset("x", data=np.arange(3))
        raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []


def test_partial_file_is_not_taken_for_a_finished_one(tmp_path):
    target = tmp_path / "out.h5"
    with h5py.File(target, "w") as f:  # e.g. a file written by something else / an old version
        f.create_dataset("times", data=np.arange(3.0))
    with pytest.raises(io.FormatError, match=r"expected format 'dbdflow\.sims/1'"):
        io.read_sims_observables(target)
    target.write_bytes(b"\x89HDF truncated")
    with pytest.raises(io.FormatError, match="not a readable HDF5 file"):
        io.read_sims_observables(target)


def test_sims_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    states = rng.integers(0, 3, size=(2, 4, 10)).astype(np.int8)
    obs = {"counts": rng.integers(0, 10, size=(2, 4, 2))}
    attrs = {"ic": 3, "species": ["A", "B"], "config": {"a": [1, {"b": 2}]}}
    io.write_sims(
        tmp_path / "s.h5", times=np.arange(4) * 0.1, observables=obs, states=states, attrs=attrs
    )
    _, back, got = io.read_sims_observables(tmp_path / "s.h5")
    assert np.array_equal(back["counts"], obs["counts"]) and back["counts"].dtype == np.int64
    assert got["ic"] == 3 and got["species"] == ["A", "B"] and got["config"] == attrs["config"]
    assert np.array_equal(io.read_sims_states(tmp_path / "s.h5"), states)


def test_mean_and_stderr_from_exact_sums():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 10**6, size=(37, 5)).astype(np.int64)  # 37 trajectories, 5 times
    mean, stderr = io.mean_and_stderr(x.sum(0)[None], (x * x).sum(0)[None], np.array([37]))
    assert np.allclose(mean[0], x.mean(0), rtol=1e-14)
    assert np.allclose(stderr[0], x.std(0, ddof=1) / np.sqrt(37), rtol=1e-12)
