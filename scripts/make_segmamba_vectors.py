"""Make the SegMamba reference vectors by running the public SegMamba code itself, on CPU.

This is how `Testing/networks/vectors/segmamba*.npz` were made. It runs ge-xing/SegMamba's own
`model_segmamba/segmamba.py`, its bundled modified mamba-ssm (`bimamba_type="v3"`, `nslices`) and its
bundled MONAI blocks, read straight from a git checkout or bare mirror of that repository into a
temporary folder. Nothing of that code is kept or committed.

SegMamba's Mamba calls CUDA-only kernels. They are replaced here, and only here, by the reference
implementations that ship in the same upstream tree:

- modules `causal_conv1d_cuda` and `selective_scan_cuda` (compiled extensions) are registered as
  empty modules so that the upstream Python files import; nothing ever calls into them;
- `mamba_ssm.ops.selective_scan_interface.causal_conv1d_fn` -> upstream `causal_conv1d_ref`
  (bundled causal-conv1d: F.conv1d with left padding, then SiLU);
- `mamba_ssm.ops.selective_scan_interface.selective_scan_fn` -> upstream `selective_scan_ref`
  (the sequential reference scan; it casts its inputs to float32 internally);
- `mamba_ssm.modules.mamba_simple.mamba_inner_fn_no_out_proj` (the fused CUDA path that the v3
  forward takes) -> upstream `mamba_inner_ref` given an identity `out_proj` and no bias, with the
  result transposed back to (batch, d_inner, L). Multiplying by an identity matrix is exact, so
  this is exactly the unfused reference maths of the fused kernel.

The modules run in float64, eval mode, with random weights: every parameter is drawn at random,
LayerNorm weights and biases included (SegMamba's InstanceNorms have no parameters or running
statistics). Parameters and inputs are drawn as float16 values, stored as float16 (exact in
float64, half the size of float32), and converted to float64 before the run. The float64 output
is stored rounded to float32 (6e-8 relative, far below the 1e-5 test tolerance) to keep the
files small.

Usage (einops must be importable; it is needed only here):
    python -m pip install --target /tmp/einops_site einops
    PYTHONPATH=/tmp/einops_site .venv/bin/python scripts/make_segmamba_vectors.py \
        --upstream /work/.mirror/ge-xing+SegMamba/repo --out Testing/networks/vectors
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

from git_archive import git_archive

UPSTREAM_PATHS = ["model_segmamba", "mamba/mamba_ssm", "causal-conv1d/causal_conv1d", "monai"]

# segmamba_mamba.npz: the v3 Mamba alone (upstream constructor arguments, input shape)
MAMBA_CONFIG = {"d_model": 16, "d_state": 8, "d_conv": 4, "expand": 2, "bimamba_type": "v3", "nslices": 4}
MAMBA_INPUT = (2, 24, 16)  # (batch, L, d_model); L divisible by nslices
# segmamba.npz: the whole network. UnetOutBlock is hard-wired to 48 input channels upstream, so
# feat_size[0] must be 48.
NET_CONFIG = {"in_chans": 1, "out_chans": 2, "depths": [2, 1, 1, 1], "feat_size": [48, 8, 12, 16],
              "hidden_size": 16}
# The smallest cube for which every stage's token count divides the hard-wired nslices (64, 32, 16, 8).
NET_INPUT = (1, 1, 32, 32, 32)


def import_upstream(root: Path):
    """Import upstream SegMamba with its CUDA-only functions replaced by upstream's own references."""
    for name in ("causal_conv1d_cuda", "selective_scan_cuda"):
        sys.modules[name] = types.ModuleType(name)
    sys.path[:0] = [str(root), str(root / "causal-conv1d")]
    # A bare package object for mamba_ssm, so its __init__ (which pulls the language-model code and
    # triton) does not run; the submodules below import normally.
    package = types.ModuleType("mamba_ssm")
    package.__path__ = [str(root / "mamba" / "mamba_ssm")]
    sys.modules["mamba_ssm"] = package

    import causal_conv1d.causal_conv1d_interface as conv_interface
    import mamba_ssm.ops.selective_scan_interface as scan_interface

    scan_interface.causal_conv1d_fn = conv_interface.causal_conv1d_ref
    scan_interface.selective_scan_fn = scan_interface.selective_scan_ref

    import mamba_ssm.modules.mamba_simple as mamba_simple

    def mamba_inner_no_out_proj_ref(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                                    A, B=None, C=None, D=None, delta_bias=None, B_proj_bias=None,
                                    C_proj_bias=None, delta_softplus=True, checkpoint_lvl=1):
        d_inner = xz.shape[1] // 2
        identity = torch.eye(d_inner, dtype=xz.dtype, device=xz.device)
        y = scan_interface.mamba_inner_ref(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                                           identity, None, A, B, C, D, delta_bias=delta_bias,
                                           B_proj_bias=B_proj_bias, C_proj_bias=C_proj_bias,
                                           delta_softplus=delta_softplus)
        return y.transpose(1, 2)

    mamba_simple.mamba_inner_fn_no_out_proj = mamba_inner_no_out_proj_ref
    package.Mamba = mamba_simple.Mamba

    import model_segmamba.segmamba as segmamba

    return mamba_simple, segmamba


def half_exact(generator: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    """Uniform random values in [low, high) that are exact in float16 (returned as float64)."""
    values = torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low
    return values.to(torch.float16).to(torch.float64)


def randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Overwrite every parameter with random values of a scale that keeps activations O(1)."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            shape = parameter.shape
            if leaf in ("A_log", "A_b_log", "A_s_log"):
                value = torch.log(half_exact(generator, shape, 0.5, 4.0)).to(torch.float16).to(torch.float64)
            elif leaf in ("D", "D_b", "D_s"):
                value = half_exact(generator, shape, 0.5, 1.5)
            elif ".dt_proj" in f".{name}" and leaf == "bias":
                dt = half_exact(generator, shape, 0.01, 0.5)
                value = (dt + torch.log(-torch.expm1(-dt))).to(torch.float16).to(torch.float64)
            elif parameter.dim() == 1 and isinstance(_owner(module, name), torch.nn.LayerNorm):
                value = half_exact(generator, shape, 0.7, 1.3) if leaf == "weight" else \
                    half_exact(generator, shape, -0.2, 0.2)
            elif leaf == "bias":
                value = half_exact(generator, shape, -0.1, 0.1)
            else:
                fan_in = math.prod(shape[1:]) if parameter.dim() > 1 else shape[0]
                if isinstance(_owner(module, name), torch.nn.ConvTranspose3d):
                    fan_in = shape[0]
                bound = math.sqrt(3.0 / max(fan_in, 1))
                value = half_exact(generator, shape, -bound, bound)
            parameter.copy_(value)


def _owner(module: torch.nn.Module, parameter_name: str) -> torch.nn.Module:
    path = parameter_name.rsplit(".", 1)[0] if "." in parameter_name else ""
    return module.get_submodule(path) if path else module


def save(path: Path, module: torch.nn.Module, config: dict, x: torch.Tensor, y: torch.Tensor,
         commit: str, what: str) -> None:
    arrays = {f"param/{key}": value.detach().to(torch.float16).numpy()
              for key, value in module.state_dict().items()}
    for key, value in module.state_dict().items():
        if not torch.equal(value.to(torch.float16).to(value.dtype), value):
            raise RuntimeError(f"parameter {key} is not exact in float16")
    arrays["input/x"] = x.to(torch.float16).numpy()
    # float32: its rounding (6e-8 relative) is far below the 1e-5 tolerance, and it halves the file.
    arrays["output/y"] = y.detach().to(torch.float32).numpy()
    arrays["config"] = np.array(repr(config))
    arrays["upstream"] = np.array(f"ge-xing/SegMamba@{commit}: {what}")
    np.savez_compressed(path, **arrays)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, max|y| = {y.abs().max().item():.4g}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="git dir of ge-xing/SegMamba")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz files")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as scratch:
        commit = git_archive(args.upstream, "HEAD", UPSTREAM_PATHS, Path(scratch))
        mamba_simple, segmamba = import_upstream(Path(scratch))
        generator = torch.Generator().manual_seed(args.seed)

        mamba = mamba_simple.Mamba(**MAMBA_CONFIG).to(torch.float64).eval()
        randomise(mamba, generator)
        x = half_exact(generator, MAMBA_INPUT, -2.0, 2.0)
        with torch.no_grad():
            y = mamba(x)
        save(args.out / "segmamba_mamba.npz", mamba, MAMBA_CONFIG, x, y, commit,
             "mamba/mamba_ssm/modules/mamba_simple.py Mamba (bimamba_type v3)")

        net = segmamba.SegMamba(**NET_CONFIG).to(torch.float64).eval()
        randomise(net, generator)
        x = half_exact(generator, NET_INPUT, -2.0, 2.0)
        with torch.no_grad():
            y = net(x)
        save(args.out / "segmamba.npz", net, NET_CONFIG, x, y, commit, "model_segmamba/segmamba.py SegMamba")
    return 0


if __name__ == "__main__":
    sys.exit(main())
