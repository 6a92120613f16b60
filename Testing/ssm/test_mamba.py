"""The Mamba block reproduces upstream mamba-ssm's Mamba (committed and shared reference vectors)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from nnmamba.ssm.mamba import Mamba

# made by scripts/make_nnmamba_vectors.py from upstream mamba-ssm; every clone has them
COMMITTED = Path(__file__).parent.parent / "networks" / "vectors"


def load_vectors(path):
    with np.load(path) as data:
        params = {k[len("param/"):]: torch.from_numpy(data[k]) for k in data.files if k.startswith("param/")}
        return params, torch.from_numpy(data["input/x"]), torch.from_numpy(data["output/y"]).double(), \
            ast.literal_eval(str(data["config"]))


@pytest.mark.parametrize("source", ["committed", "shared"])
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-5), (torch.float32, 1e-5)])
def test_mamba_block_reproduces_upstream_output(request, source, backend, dtype, tolerance):
    folder = COMMITTED if source == "committed" else request.getfixturevalue("vectors_dir")
    params, x, y, config = load_vectors(folder / "mamba.npz")
    block = Mamba(**config, scan_backend=backend)
    block.load_state_dict(params, strict=True)
    block = block.to(dtype).eval()
    with torch.no_grad():
        out = block(x.to(dtype))
    assert out.dtype == dtype
    assert ((out.double() - y).abs().max() / y.abs().max()).item() < tolerance


def test_mamba_block_has_mamba_ssm_parameter_names_and_shapes():
    block = Mamba(d_model=16, d_state=16, d_conv=4, expand=2)
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert shapes == {
        "A_log": (32, 16), "D": (32,), "in_proj.weight": (64, 16), "conv1d.weight": (32, 1, 4),
        "conv1d.bias": (32,), "x_proj.weight": (33, 32), "dt_proj.weight": (32, 1),
        "dt_proj.bias": (32,), "out_proj.weight": (16, 32),
    }


def test_mamba_block_refuses_a_wrong_input_shape():
    with pytest.raises(ValueError, match=r"expects \(batch, L, 16\), got \(2, 16\)"):
        Mamba(d_model=16)(torch.randn(2, 16))


def test_mamba_block_under_bfloat16_autocast_stays_close_to_float32():
    torch.manual_seed(0)
    block = Mamba(d_model=16, scan_backend="torch").eval()
    x = torch.randn(2, 64, 16)
    with torch.no_grad():
        want = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = block(x)
    assert torch.isfinite(got).all()
    assert ((got.float() - want).abs().max() / want.abs().max()).item() < 5e-2


@pytest.mark.parametrize("length", [1, 2, 3, 4, 9])
def test_token_major_causal_conv_equals_torch_conv1d(length):
    from nnmamba.ssm.mamba import causal_depthwise_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, kernel_size=4, groups=6, padding=3).double()
    x = torch.randn(2, length, 6, dtype=torch.float64)
    want = conv(x.transpose(1, 2))[..., :length].transpose(1, 2)
    got = causal_depthwise_conv(x, conv.weight, conv.bias)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
