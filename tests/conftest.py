"""Fixtures shared by several test modules; plain shared functions live in ``tests/helpers/``."""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config):
    """One thread per test process, set once: `make test` runs one process per core, and a
    second torch / numba / BLAS thread per process would only oversubscribe the CPU."""
    from liftgs.runtime import configure_runtime

    configure_runtime(threads=1)


FAST_BACKENDS = ("torch", "numba")  # every fast renderer backend runs every test against the dense reference


@pytest.fixture(params=FAST_BACKENDS)
def backend(request) -> str:
    """Each fast renderer backend in turn."""
    return request.param


@pytest.fixture(scope="module")
def model():
    """A small LIFT-GS (``helpers.model_inputs.small_config``), seeded, one per test module."""
    from liftgs.models.liftgs import build_liftgs

    from helpers.model_inputs import small_config

    torch.manual_seed(0)
    return build_liftgs(small_config())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Four fabricated rooms (3 train, 1 val) with pseudo-labels for every frame."""
    from liftgs.testing import write_rooms

    return write_rooms(tmp_path_factory.mktemp("rooms"))


@pytest.fixture(scope="module")
def quick_rooms(tmp_path_factory):
    """Two `quick` synthetic rooms pseudo-labelled by the synthetic teacher, clouds thinned 4x."""
    from liftgs.testing import write_quick_rooms

    return write_quick_rooms(tmp_path_factory.mktemp("quick"))


@pytest.fixture
def cli_error(capsys):
    """``cli_error(argv)`` runs ``liftgs argv``, expects exit status 2 and one line on stderr, and
    returns that line (a user's mistake is reported in one line, without a traceback)."""

    def run(argv: list[str]) -> str:
        from liftgs.cli import main as cli_main

        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    return run
