"""What two forms of one module are compared on in the layout tests: the output, the input's
gradient and every parameter's gradient, for one fixed non-uniform weighting of the output."""

from __future__ import annotations

import torch


def output_and_gradients(module: torch.nn.Module, x: torch.Tensor) -> tuple:
    """(out, dL/dx, {name: dL/dparameter}) for L = sum(out * w), w = linspace(-1, 1) over out's elements.

    A fresh leaf copy of x is used, so x itself gets no gradient; the module's parameter gradients
    accumulate, so pass a module whose .grad are None.
    """
    x = x.clone().requires_grad_(True)
    out = module(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)).sum().backward()
    return out.detach(), x.grad, {k: p.grad for k, p in module.named_parameters()}
