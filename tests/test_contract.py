"""Every registered method passes the plugin contract check (zoo.testing.check_method) with its defaults:
spec and lazy targets, config round trip, sampler output on its default model, and a 2-step training run on the
shared runtime. New methods are covered automatically."""

import pytest

from zoo.registry import get_registry
from zoo.testing import check_method

SPECS = get_registry().list()


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_registered_method_meets_the_contract(spec, tmp_path):
    report = check_method(spec, workdir=tmp_path, trainer_steps=2, config_overrides=["train.batch_size=2"])
    assert report.ok, report.problems
    assert report.checked == ["spec", "config", "sampler", "trainer"]
