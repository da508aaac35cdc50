"""Library calls leave process-wide state alone; ``configure_runtime`` is the one place that sets it.

The side-effect checks run in fresh subprocesses: in this process ``conftest`` has already
configured the runtime and earlier tests have started numba's pool, which would mask them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.recipe_configs import pretrain_config

# Thread counts unlike anything the library could set: torch 2, numba's pool 3 (the renderer
# used to pin numba to torch's count), OpenBLAS 2 (it used to cap scipy's at 1). Idle OpenMP
# workers sleep: numba's default OpenMP layer next to torch's would otherwise slow torch down.
_ENV = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
        "NUMBA_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE"}

_PRELUDE = '''
import json, os, random, sys, warnings
import numpy as np, scipy.linalg, threadpoolctl, torch

def blas_threads(where=""):
    return sorted((i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()
                  if i["user_api"] == "blas" and where in i["filepath"])

def report(result):
    print("@@" + json.dumps(result))
'''

# Imports whose own side effects are not the library's: torch._dynamo (imported by every torch
# optimiser) sets TORCHINDUCTOR_CACHE_DIR.
_SIDE_EFFECT_WORK = '''
import pickle, socket, tempfile
from pathlib import Path
import torch._dynamo
from transformers.utils import logging as hf_logging

def no_network(*args, **kwargs):
    raise AssertionError("network access attempted")

socket.socket.connect = no_network  # loaders must stay offline without HF_HUB_OFFLINE
torch.set_num_threads(2)
random.seed(123); np.random.seed(456); torch.manual_seed(789)

def snapshot():
    import numba
    return {"environ": dict(os.environ), "python_rng": pickle.dumps(random.getstate()).hex(),
            "numpy_rng": pickle.dumps(np.random.get_state()).hex(),
            "torch_rng": torch.get_rng_state().numpy().tobytes().hex(),
            "torch_threads": torch.get_num_threads(), "numba_layer_config": str(numba.config.THREADING_LAYER),
            "numba_pool": numba.config.NUMBA_NUM_THREADS, "blas": blas_threads(),
            "hf_logging": [hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()]}

before = snapshot()
import liftgs
from liftgs.models import build_model
from liftgs.recipes.pretrain import PretrainConfig, run_pretrain
from liftgs.render import render
from liftgs.runtime import fork_rng
from liftgs.teachers.samclip import ClipImageEncoder
from liftgs.teachers.tiny import write_tiny_clip
from liftgs.testing import write_rooms
from liftgs.text import load_text_encoder

g = torch.Generator().manual_seed(0)
N = 64
scene = dict(means=torch.cat([torch.rand(N, 2, generator=g) - 0.5, 2 + torch.rand(N, 1, generator=g)], 1),
             quats=torch.randn(N, 4, generator=g), scales=0.05 + 0.1 * torch.rand(N, 3, generator=g),
             opacities=0.2 + 0.7 * torch.rand(N, generator=g), attributes=torch.rand(N, 3, generator=g),
             viewmat=torch.eye(4), K=torch.tensor([[20.0, 0, 12], [0, 20, 12], [0, 0, 1]]),
             width=24, height=24)
images = {}
for backend in ("numba", "torch"):
    inputs = dict(scene)
    for key in ("means", "opacities", "attributes"):
        inputs[key] = scene[key].clone().requires_grad_()
    image, alpha, _ = render(**inputs, backend=backend)
    (image.square().sum() + alpha.sum()).backward()
    images[backend] = image.detach()
assert torch.allclose(images["numba"], images["torch"], atol=1e-5)
assert load_text_encoder("minilm").encode(["a red chair"]).pooled.shape == (1, 384)
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    ClipImageEncoder.from_dir(write_tiny_clip(tmp / "clip"))  # SAM and the captioner load the same way
    load_text_encoder(tmp / "clip")
    with fork_rng():  # module initialisation draws from torch's RNG by design (the caller's to seed)
        build_model("liftgs", "tiny", 16)
    root = write_rooms(tmp / "rooms", count=2, val=0)
    run_pretrain(PretrainConfig(data=root / "data", labels=root / "labels", out=tmp / "run", steps=2,
                                batch_size=1, image_size=24, num_pixels=128, ckpt_every=2, tensorboard=False,
                                progress=False, losses="ground"))
after = snapshot()
import numba
after["numba_threads"] = numba.get_num_threads()
after["numba_layer"] = numba.threading_layer()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    liftgs.configure_runtime()  # too late to choose the layer: it must say so
after["late_warning"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
report({"before": before, "after": after})
'''


def _run(work: str, extra_env: dict[str, str] | None = None):
    """Run ``_PRELUDE + work`` in a fresh interpreter; returns what it ``report``-ed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "HF_", "TRANSFORMERS_"))}
    env.update(_ENV, **(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _PRELUDE + work], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(next(line[2:] for line in out.stdout.splitlines() if line.startswith("@@")))


def test_library_calls_leave_process_state_alone():
    """Import; render with the numba and torch backends (with gradients); load MiniLM and a tiny
    CLIP offline; build a model; pre-train two steps: environment, RNGs, thread counts, numba's
    layer, BLAS threads and transformers' logging are as they were, and no socket was opened."""
    result = _run(_SIDE_EFFECT_WORK)
    before, after = result["before"], result["after"]
    assert before["torch_threads"] == 2 and before["numba_pool"] == 3
    assert any(n > 1 for _, n in before["blas"]) or os.cpu_count() == 1  # else a cap would go unseen
    for key in before:
        assert after[key] == before[key], f"{key} changed"
    assert after["numba_threads"] == 3, "numba's thread count was set"
    if _numba_has_openmp():  # numba's own pick (tbb, then omp) is not the one configure_runtime makes
        assert after["numba_layer"] in ("tbb", "omp"), "numba's threading layer was chosen"
        assert len(after["late_warning"]) == 1 and "configure_runtime" in after["late_warning"][0]


def _numba_has_openmp() -> bool:
    return importlib.util.find_spec("numba.np.ufunc.omppool") is not None


def test_configure_runtime_sets_what_it_says():
    got = _run('''
import dataclasses, liftgs, numba
before = blas_threads("scipy.libs")
settings = liftgs.configure_runtime(threads=1)
report({"settings": dataclasses.asdict(settings), "torch": torch.get_num_threads(),
        "numba": numba.get_num_threads(), "layer": numba.threading_layer(),
        "scipy_blas_before": before, "scipy_blas": blas_threads("scipy.libs")})
''')
    assert got["torch"] == 1 and got["numba"] == 1 and got["layer"] == "workqueue"
    assert got["scipy_blas"] and {n for _, n in got["scipy_blas"]} == {1}
    assert {n for _, n in got["scipy_blas_before"]} == {2} or os.cpu_count() == 1
    assert got["settings"] == {"torch_threads": 1, "numba_threads": 1, "numba_threading_layer": "workqueue",
                               "scipy_blas_libraries": len(got["scipy_blas"])}
    from liftgs.runtime import configure_runtime

    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        configure_runtime(threads=0)


def test_configure_runtime_keeps_a_layer_chosen_by_environment():
    if not _numba_has_openmp():
        pytest.skip("numba's OpenMP layer is not built here")
    work = ("import liftgs, numba\nliftgs.configure_runtime(threads=1)\n"
            "report([numba.threading_layer(), numba.get_num_threads(), torch.get_num_threads()])")
    assert _run(work, {"NUMBA_THREADING_LAYER": "omp"}) == ["omp", 1, 1]  # starting omp keeps torch's count


def _rng_states():
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _same_rng(a, b) -> bool:
    (py_a, np_a, t_a), (py_b, np_b, t_b) = a, b
    return (py_a == py_b and np_a[0] == np_b[0] and np.array_equal(np_a[1], np_b[1])
            and np_a[2:] == np_b[2:] and torch.equal(t_a, t_b))


def test_fork_rng_restores_and_seeds():
    from liftgs.runtime import fork_rng

    torch.manual_seed(5)
    states = _rng_states()
    with fork_rng(7):
        inside = (random.random(), np.random.rand(), torch.rand(1))
        torch.randn(100)
    assert _same_rng(_rng_states(), states)
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    assert inside == (random.random(), np.random.rand(), torch.rand(1))


def test_recipe_rng_isolation_keeps_the_trained_weights(dataset, tmp_path):
    """The recipe forks the global RNGs: the caller's states survive, and the weights are bitwise
    those of the same run seeding the process globally (the undecorated function)."""
    from liftgs.recipes.pretrain import run_pretrain

    cfg = dict(steps=2, ckpt_every=2, image_size=24, num_pixels=128)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    states = _rng_states()
    forked = run_pretrain(pretrain_config(dataset, tmp_path / "forked", **cfg)).model.state_dict()
    assert _same_rng(_rng_states(), states)
    torch.manual_seed(99)  # another caller state: it must not matter
    seeding_globally = run_pretrain.__wrapped__(pretrain_config(dataset, tmp_path / "global", **cfg))
    expected = seeding_globally.model.state_dict()
    assert not torch.equal(torch.get_rng_state(), states[2])  # seeding globally leaves the run's state behind
    assert forked.keys() == expected.keys()
    for k in forked:
        assert torch.equal(forked[k], expected[k]), k
