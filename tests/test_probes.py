"""tests/probes.py's cases, each a test: a stranger's bad inputs end as promised."""

import pytest

from tests import probes

pytestmark = pytest.mark.slow  # a process per case


@pytest.fixture(scope="module")
def all_cases(tmp_path_factory):
    return probes.cases(tmp_path_factory.mktemp("probes"))


@pytest.mark.parametrize("number", range(12))
def test_probe_is_clean(all_cases, number):
    outcome = probes.run(all_cases[number])
    assert outcome.problems == [], (outcome.case.name, outcome.out, outcome.err)


def test_every_probe_has_a_test(all_cases):
    assert len(all_cases) == 12
