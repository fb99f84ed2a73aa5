import jobconfig
import pytest
from pydantic import ValidationError


def test_defaults_and_normalised_name():
    config = jobconfig.load({"name": " Nightly "})
    assert config.name == "nightly" and config.workers == 1 and config.inputs == []


def test_workers_are_bounded():
    with pytest.raises(ValidationError):
        jobconfig.load({"name": "x", "workers": 0})
