"""Make a model run as an execution plan says: `apply_plan(model, plan)`.

The plan (`nnmamba.execution_plan`) only decides; this module rewrites modules to match: it pushes
the plan's scan backend into every Mamba block, converts to channels_last_3d, and for inference
builds the fast form the plan asks for: the fused MICCSS copy (`fast_path`), folded BatchNorms, CUDA
graphs per input shape (`cuda_graph`).

Example:
    >>> plan = make_plan(net, "cuda", torch.bfloat16)
    >>> fast = apply_plan(net.cuda(), plan)       # a fused copy; `net` keeps its weights
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from nnmamba.execution_plan import TRAINING, ExecutionPlan, facts_of_module
from nnmamba.inference.cuda_graph import GraphedNetwork
from nnmamba.inference.fast_path import fold_batchnorm, prepare_for_inference
from nnmamba.ssm.mamba import Mamba


def apply_plan(model: nn.Module, plan: ExecutionPlan) -> nn.Module:
    """Make `model` run as `plan` says.

    Training: sets every Mamba block's backend and fused flag for the plan's device, converts the
    parameters to channels_last_3d when the plan says so (the caller then feeds batches in that
    format: `to_plan_layout`), and returns `model` itself (moving it to the device stays the caller's).
    Inference: the same, then returns the fast form the plan's flags ask for (a copy; `model` keeps
    its weights): the fused copy of `nnmamba.inference.fast_path` (which folds the BatchNorms), or
    only folded BatchNorms, wrapped in `GraphedNetwork` when cuda_graphs; `model` itself in eval mode
    when no fused form applies.
    """
    facts = facts_of_module(model)
    if facts.name != plan.network:
        raise ValueError(f"the plan was made for {plan.network}, got a {facts.name}; make the plan from this model")
    for module in model.modules():
        if isinstance(module, Mamba):
            module.use_plan(plan.device, plan.scan_backend, plan.fused_inner, plan.mode)
    if plan.mode == TRAINING:
        return model.to(memory_format=torch.channels_last_3d) if plan.channels_last else model
    fast = model.eval()
    if plan.fused_miccss:
        fast = prepare_for_inference(model, plan.dtype, channels_last=plan.channels_last)
    elif plan.fold_batchnorm:
        fast = fold_batchnorm(copy.deepcopy(model).eval())
        if plan.channels_last:
            fast = fast.to(memory_format=torch.channels_last_3d)
    if plan.cuda_graphs:
        fast = GraphedNetwork(fast)
    return fast
