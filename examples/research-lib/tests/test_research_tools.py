import numpy as np
from research_tools import zscore


def test_zscore_centres_and_scales():
    out = zscore([1, 2, 3])
    assert np.isclose(out.mean(), 0) and np.isclose(out.std(), 1)


def test_constant_input():
    assert (zscore([5, 5]) == 0).all()


def test_load_experiment(tmp_path):
    from research_tools import load_experiment

    path = tmp_path / "exp.toml"
    path.write_text('seed = 7\n')
    assert load_experiment(path) == {"seed": 7}
