"""Make the small nnMamba reference vectors by running the public nnMamba code itself, on CPU.

This is how `Testing/networks/vectors/{mamba,miccss_layer,nnmamba_seg,nnmamba_cls}.npz` were made.
It runs lhaof/nnMamba's own `nnMamba.py` (MambaLayer, nnMambaSeg) and `nnMamba4cls.py`
(nnMambaEncoder) on top of state-spaces/mamba's own `Mamba` module (mamba-ssm v2.3.2,
`mamba_ssm/modules/mamba_simple.py`). Both are read straight from git checkouts or bare mirrors of
those repositories into a temporary folder; nothing of that code is kept or committed.

mamba-ssm cannot be imported without CUDA. Here, and only here, its CUDA-only parts are replaced by
the reference implementations that ship in the same upstream tree:

- the compiled extension `selective_scan_cuda` is registered as an empty module so that the upstream
  Python files import; nothing ever calls into it;
- `causal_conv1d` is made unimportable, so upstream `Mamba.forward` takes its own documented
  non-fused path (`self.act(self.conv1d(x)[..., :seqlen])`, then `selective_scan_fn`);
- `selective_scan_fn` (the CUDA scan) -> upstream `selective_scan_ref`, the sequential reference
  scan (it casts its inputs to float32 internally, as the CUDA kernel does).

The modules run in float64, eval mode, with random weights: every parameter and every BatchNorm
running statistic is drawn at random from a seeded generator, so the files are bit-for-bit
reproducible and every stored number matters. Parameters and inputs are drawn as float16 values and
stored as float16 (exact in float64, a quarter of the size); integer buffers stay int64; the
float64 output is stored as float64. The networks are built small (4 channels, 16^3 inputs) so the
four files together stay well under 1 MB.

`--check DIR` instead runs the upstream modules on the vectors in DIR (for instance the large shared
ones, `../shared/vectors`): it loads each file's weights into the upstream module built from the
file's config, runs its input and prints the difference to its stored output. A difference at
float64 rounding level shows that this script's upstream maths is the one that made those vectors.

Usage (einops must be importable; it is needed only here):
    python -m pip install --target /tmp/einops_site einops
    PYTHONPATH=/tmp/einops_site .venv/bin/python scripts/make_nnmamba_vectors.py \
        --nnmamba /work/.mirror/lhaof+nnMamba/repo --mamba /work/.mirror/state-spaces+mamba/repo \
        --out Testing/networks/vectors
    ... the same with --check ../shared/vectors instead of --out
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

from git_archive import git_archive

NNMAMBA_PATHS = ["nnMamba.py", "nnMamba4cls.py"]
MAMBA_PATHS = ["mamba_ssm"]
MAMBA_REF = "v2.3.2"

# name -> (upstream constructor config, input shape). 4 channels keep the networks' weights small
# (the attention layers' hidden width channels // 16 is then 0 at the first two stages, 1 at the
# third); blocks 3 keeps one MambaLayer shared by two blocks per stage, as upstream builds it.
CONFIGS = {
    "mamba": ({"d_model": 8, "d_state": 16, "d_conv": 4, "expand": 2}, (2, 29, 8)),
    "miccss_layer": ({"dim": 8, "d_state": 16, "d_conv": 4, "expand": 2}, (2, 8, 6, 5, 4)),
    "nnmamba_seg": ({"in_ch": 1, "channels": 4, "blocks": 3, "number_classes": 3}, (2, 1, 16, 16, 16)),
    "nnmamba_cls": ({"in_ch": 1, "channels": 4, "blocks": 3, "number_classes": 3}, (2, 1, 16, 16, 16)),
}


def import_upstream(root: Path) -> dict:
    """Import upstream nnMamba and mamba-ssm with the CUDA-only parts replaced by upstream's references."""
    sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
    # None in sys.modules makes `import causal_conv1d` raise ImportError: upstream's own fallback.
    sys.modules["causal_conv1d"] = None
    sys.path.insert(0, str(root))
    # A bare package object for mamba_ssm, so its __init__ (which pulls the language-model and
    # Mamba-2 code) does not run; the submodules below import normally.
    package = types.ModuleType("mamba_ssm")
    package.__path__ = [str(root / "mamba_ssm")]
    sys.modules["mamba_ssm"] = package

    import mamba_ssm.ops.selective_scan_interface as scan_interface

    scan_interface.selective_scan_fn = scan_interface.selective_scan_ref

    import mamba_ssm.modules.mamba_simple as mamba_simple

    if mamba_simple.causal_conv1d_fn is not None:
        raise RuntimeError("upstream Mamba found causal_conv1d; its fused CUDA path cannot run here")
    mamba_simple.selective_scan_fn = scan_interface.selective_scan_ref
    package.Mamba = mamba_simple.Mamba

    import nnMamba
    import nnMamba4cls

    return {
        "mamba": mamba_simple.Mamba,
        "miccss_layer": nnMamba.MambaLayer,
        "nnmamba_seg": nnMamba.nnMambaSeg,
        "nnmamba_cls": nnMamba4cls.nnMambaEncoder,
    }


def half_exact(generator: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    """Uniform random values in [low, high) that are exact in float16 (returned as float64)."""
    values = torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low
    return values.to(torch.float16).to(torch.float64)


def _owner(module: torch.nn.Module, name: str) -> torch.nn.Module:
    path = name.rsplit(".", 1)[0] if "." in name else ""
    return module.get_submodule(path) if path else module


def random_value(module: torch.nn.Module, name: str, tensor: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
    """A random replacement for state_dict entry `name`, of a scale that keeps activations O(1)."""
    leaf = name.rsplit(".", 1)[-1]
    shape = tensor.shape
    owner = _owner(module, name)
    if leaf == "A_log":
        return torch.log(half_exact(generator, shape, 0.5, 4.0)).to(torch.float16).to(torch.float64)
    if leaf == "D":
        return half_exact(generator, shape, 0.5, 1.5)
    if name.endswith("dt_proj.bias"):
        dt = half_exact(generator, shape, 0.01, 0.5)
        return (dt + torch.log(-torch.expm1(-dt))).to(torch.float16).to(torch.float64)
    if isinstance(owner, torch.nn.modules.batchnorm._BatchNorm):
        # running statistics: placeholders here, set by calibrate_batchnorm
        ranges = {"weight": (0.5, 1.5), "bias": (-0.2, 0.2), "running_mean": (-0.3, 0.3),
                  "running_var": (0.5, 2.0)}
        return half_exact(generator, shape, *ranges[leaf])
    if leaf == "bias":
        return half_exact(generator, shape, -0.1, 0.1)
    fan_in = math.prod(shape[1:]) if tensor.dim() > 1 else shape[0]
    bound = math.sqrt(3.0 / max(fan_in, 1))
    return half_exact(generator, shape, -bound, bound)


def randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Overwrite every floating-point parameter and buffer (BatchNorm statistics too) at random."""
    with torch.no_grad():
        # named_parameters/named_buffers visit a shared module once, so a shared MambaLayer gets one
        # draw, as it has one set of weights.
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(random_value(module, name, tensor, generator))


def calibrate_batchnorm(module: torch.nn.Module, x: torch.Tensor, generator: torch.Generator) -> None:
    """Set BatchNorm running statistics near the statistics `module` meets on input `x`, at random.

    Statistics drawn independently of the activations either fade the signal into the biases (the
    output then hardly depends on the input) or, since a Mamba block is quadratic in its input
    (y * silu(z)), let it explode stage by stage (1e6 at layer2 of nnMambaSeg). So one train-mode
    pass over `x` measures each BatchNorm's input mean and variance, and the stored statistics are
    those, randomly perturbed (mean +- 0.1 std, variance x [0.8, 1.25]) and made float16-exact.
    """
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: after one pass, exactly that pass's statistics
    module.train()
    with torch.no_grad():
        module(x)
        for norm, momentum in zip(norms, momenta):
            std = norm.running_var.sqrt()
            shift = half_exact(generator, std.shape, -0.1, 0.1) * std
            factor = half_exact(generator, std.shape, 0.8, 1.25)
            norm.running_mean.copy_((norm.running_mean + shift).to(torch.float16).to(torch.float64))
            norm.running_var.copy_((norm.running_var * factor).to(torch.float16).to(torch.float64))
            norm.num_batches_tracked.zero_()
            norm.momentum = momentum
    module.eval()


def save(path: Path, module: torch.nn.Module, config: dict, x: torch.Tensor, y: torch.Tensor,
         provenance: str) -> None:
    arrays = {}
    for key, value in module.state_dict().items():
        if value.is_floating_point():
            if not torch.equal(value.to(torch.float16).to(value.dtype), value):
                raise RuntimeError(f"parameter {key} is not exact in float16")
            value = value.to(torch.float16)
        arrays[f"param/{key}"] = value.numpy()
    arrays["input/x"] = x.to(torch.float16).numpy()
    arrays["output/y"] = y.detach().to(torch.float64).numpy()
    arrays["config"] = np.array(repr(config))
    arrays["upstream"] = np.array(provenance)
    np.savez_compressed(path, **arrays)
    print(f"{path}: {path.stat().st_size / 1e3:.0f} kB, max|y| = {y.abs().max().item():.4g}")


def make(builders: dict, out: Path, seed: int, provenance: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for name, (config, input_shape) in CONFIGS.items():
        module = builders[name](**config).to(torch.float64).eval()
        randomise(module, generator)
        # Twice the batch and (for the networks) twice the size of the input, so that even the
        # deepest stage's statistics come from more than a handful of values.
        calibration_shape = (2 * input_shape[0], *input_shape[1:2],
                             *[2 * n if len(input_shape) == 5 and name != "miccss_layer" else n
                               for n in input_shape[2:]])
        calibrate_batchnorm(module, half_exact(generator, calibration_shape, -2.0, 2.0), generator)
        x = half_exact(generator, input_shape, -2.0, 2.0)
        with torch.no_grad():
            y = module(x)
        save(out / f"{name}.npz", module, config, x, y, f"{provenance}: {builders[name].__qualname__}")


def check(builders: dict, folder: Path) -> int:
    """Run the upstream modules on the vectors in `folder`; 0 when every output matches to 1e-12."""
    worst = 0.0
    for name in CONFIGS:
        with np.load(folder / f"{name}.npz") as data:
            config = ast.literal_eval(str(data["config"]))
            params = {key[len("param/"):]: torch.from_numpy(data[key]) for key in data.files
                      if key.startswith("param/")}
            x = torch.from_numpy(data["input/x"]).to(torch.float64)
            expected = torch.from_numpy(data["output/y"]).to(torch.float64)
        module = builders[name](**config).to(torch.float64).eval()
        module.load_state_dict(params, strict=True)
        with torch.no_grad():
            y = module(x)
        error = ((y - expected).abs().max() / expected.abs().max()).item()
        worst = max(worst, error)
        print(f"{folder / name}.npz: upstream {builders[name].__qualname__}{config} on input "
              f"{tuple(x.shape)}: max|y - stored| / max|stored| = {error:.3g}")
    return 0 if worst <= 1e-12 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nnmamba", type=Path, required=True, help="git dir of lhaof/nnMamba")
    parser.add_argument("--mamba", type=Path, required=True, help="git dir of state-spaces/mamba")
    parser.add_argument("--mamba-ref", default=MAMBA_REF, help=f"mamba-ssm tag or commit (default {MAMBA_REF})")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="folder for the .npz files")
    target.add_argument("--check", type=Path, help="folder of existing vectors to rerun upstream on")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        nnmamba_commit = git_archive(args.nnmamba, "HEAD", NNMAMBA_PATHS, Path(scratch))
        mamba_commit = git_archive(args.mamba, args.mamba_ref, MAMBA_PATHS, Path(scratch))
        builders = import_upstream(Path(scratch))
        if args.check is not None:
            return check(builders, args.check)
        provenance = (f"lhaof/nnMamba@{nnmamba_commit} on state-spaces/mamba@{mamba_commit} "
                      f"({args.mamba_ref}, selective_scan_ref)")
        make(builders, args.out, args.seed, provenance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
