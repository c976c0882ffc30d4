"""Every registered method passes the plugin contract check (zoo.testing.check_method) with its defaults:
spec and lazy targets, config round trip, sampler output on its default model, and a 2-step training run on the
shared runtime. New methods are covered automatically."""

import pytest
from conftest import SHARED_DATA

from zoo.registry import get_registry
from zoo.testing import check_method

SPECS = get_registry().list()

EXTERNAL_DATA = {"imdn": {"model": SHARED_DATA / "imdn" / "checkpoints" / "IMDN_x4.pth",
                          "config_overrides": [f"data.hr_dir={SHARED_DATA / 'imdn' / 'Set5' / 'HR'}"]}}
"""Methods that ship neither weights (IMDN's have no license to redistribute) nor training data are checked with the
official checkpoints and images laid beside the checkout in ../shared/data; every other method runs on its own
defaults (the committed testbed)."""


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_registered_method_meets_the_contract(spec, tmp_path):
    external = EXTERNAL_DATA.get(spec.name, {})
    report = check_method(spec, workdir=tmp_path, trainer_steps=2, model=external.get("model"),
                          config_overrides=["train.batch_size=2", *external.get("config_overrides", [])])
    assert report.ok, report.problems
    assert report.checked == ["spec", "config", "sampler", "trainer"]
