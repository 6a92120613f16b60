"""The networks load upstream nnMamba state_dicts strictly and reproduce upstream outputs.

Two sets of vectors, both made by the upstream code itself (lhaof/nnMamba on mamba-ssm 2.3.2 with
its reference scan): the small ones committed under `vectors/` (made by
`scripts/make_nnmamba_vectors.py`; every clone runs them) and, when present, the larger shared
ones in `../shared/vectors` (skipped, visibly, in a clone without them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from nnmamba.networks import build_network
from nnmamba.networks.miccss import MambaLayer

COMMITTED = Path(__file__).parent / "vectors"
CASES = {
    "miccss_layer": lambda config, backend: MambaLayer(**config, scan_backend=backend),
    "nnmamba_seg": lambda config, backend: build_network("nnMambaSeg", scan_backend=backend, **config),
    "nnmamba_cls": lambda config, backend: build_network("nnMambaEncoder", scan_backend=backend, **config),
}
# float32 runs the whole network in float32: the error grows with depth (measured <= 5e-6)
TOLERANCE = {torch.float64: 1e-5, torch.float32: 2e-5}


def load_vectors(path: Path):
    with np.load(path) as data:
        params = {k[len("param/"):]: torch.from_numpy(data[k]) for k in data.files if k.startswith("param/")}
        return params, torch.from_numpy(data["input/x"]), torch.from_numpy(data["output/y"]).double(), \
            ast.literal_eval(str(data["config"]))


@pytest.fixture(scope="module", params=["committed", "shared"])
def vectors(request):
    folder = COMMITTED if request.param == "committed" else request.getfixturevalue("vectors_dir")
    return {name: load_vectors(folder / f"{name}.npz") for name in CASES}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_network_reproduces_upstream_output(vectors, name, backend, dtype):
    params, x, y, config = vectors[name]
    model = CASES[name](config, backend)
    model.load_state_dict(params, strict=True)
    model = model.to(dtype).eval()
    with torch.no_grad():
        out = model(x.to(dtype))
    assert out.shape == y.shape
    assert ((out.double() - y).abs().max() / y.abs().max()).item() < TOLERANCE[dtype]


def test_seg_state_dict_lists_the_shared_mamba_layer_under_every_block_like_upstream(vectors):
    params = vectors["nnmamba_seg"][0]
    model = build_network("nnMambaSeg", **vectors["nnmamba_seg"][3])
    assert sorted(model.state_dict()) == sorted(params)
    assert model.layer1[1].mamba_layer is model.layer1[2].mamba_layer
    assert model.layer1[0].mamba_layer is None


def test_committed_vectors_depend_on_their_input_so_a_match_means_something():
    # A network whose output is nearly constant would match upstream with almost any maths.
    for name in CASES:
        _, _, y, _ = load_vectors(COMMITTED / f"{name}.npz")
        assert torch.isfinite(y).all()
        assert y.std().item() > 0.05 * y.abs().max().item(), name
    _, _, seg, _ = load_vectors(COMMITTED / "nnmamba_seg.npz")
    for channel in range(seg.shape[1]):
        assert seg[:, channel].std().item() > 0.05 * seg.abs().max().item()
