"""Workers killed under load (conformance/chaos.py): pg, Flight SQL and HS2 clients run the
22 TPC-H queries while a worker is killed every few seconds."""
import pytest

import chaos
from conftest import configured_sluice


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with configured_sluice(tmp_path_factory, "chaos", chaos.CONFIG) as s:
        yield s


def test_killed_workers_give_right_answers_or_clean_errors_and_no_hang(server):
    tally, kills = chaos.run(server, seconds=45, every=3)
    figures = chaos.summary(tally, kills, 45)
    print(figures)
    assert len(kills) >= 8, figures
    assert not tally.wrong, figures
    assert not tally.unclean, figures
    # Every protocol kept answering through it.
    assert all(tally.right.get(front, 0) >= 5 for front in ("pg", "flight", "hs2")), figures
    assert server.proc.poll() is None
    # And the gateway is fine afterwards.
    tally, _ = chaos.run(server, seconds=5, every=1000)
    assert not tally.wrong and not tally.unclean and sum(tally.right.values()) > 0
