"""The training loop: seeds, mixed precision, DDP, time budget, checkpoints, resume, logs.

    config = TrainConfig(card=card_dict, data_dir="data/prepared", out_dir="runs/seg", time_budget_s=600)
    result = train(config)          # writes runs/seg/<name>/model.json (the card) + weights.safetensors

The card dict is the model's card (network, hyperparameters, input spacing/patch/normalisation,
labels / landmarks / classes); training fills in `trained`, `training` and the weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from nnmamba.train import checkpoint, distributed
from nnmamba.train.data import load_cases, read_manifest, resample_case
from nnmamba.train.guards import HeldoutCheck, collapse_reason
from nnmamba.train.losses import describe_landmark_loss
from nnmamba.train.problems import LANDMARK_SIGMA_MM, make_problem
from nnmamba.train.recipes import DataRecipe, data_recipe
from nnmamba.train.timing import StepClock
from nnmamba.train.training_record import progress_record
from nnmamba.train.weight_average import WeightAverage

log = logging.getLogger("nnmamba.train")
UNLIMITED_STEPS = 1_000_000


@dataclass
class TrainConfig:
    card: dict
    data_dir: Path
    out_dir: Path
    time_budget_s: float = 600.0       # stop after this much training time (whichever comes first)
    run_budget_s: float = math.inf     # ... or after this much time in this process (one run of a resumed series)
    max_steps: int = 1_000_000         # ... or after this many steps (then the schedule follows steps)
    batch_size: int = 2                # per process
    learning_rate: float = 1e-3        # AdamW; linear warm-up, then poly decay to 0 over the steps / budget
    weight_decay: float = 1e-4
    warmup_steps: int = 200            # also after resuming from weights without optimiser moments
    heldout_every: int = 0             # steps between held-out checks (0: none); see guards.py
    stop_on_collapse: bool = True
    collapse_min_step: int = 2000      # no collapse is called before this step (every run starts near chance)
    seed: int = 0
    precision: str = "auto"            # "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16", "fp32"
    device: str = "auto"
    scan_backend: str = "auto"
    channels_last: Optional[bool] = None  # model and batches in channels_last_3d; None: the plan decides
    sigma_mm: Optional[float] = None   # landmark target Gaussian (None: problems.LANDMARK_SIGMA_MM)
    checkpoint_every_s: float = 120.0
    resume: bool = False
    log_every: int = 20
    progress_bar: bool = True
    # The dense nets end in BatchNorm + ReLU (upstream's conv8), so the range of their scores is set
    # by that BatchNorm's scale and shift, which Adam moves by ~lr per step. A multiplier > 1 speeds
    # that up, but on the shipped segmentation model 20x drove the foreground scores below the ReLU
    # (dead, Dice 0), so it is off by default.
    output_norm_lr_multiplier: float = 1.0
    weight_average_decay: float = 0.0  # > 0: check, save and ship an average of the weights (weight_average.py)
    init_from: Optional[Path] = None   # start from these weights (checkpoint or model safetensors), fresh optimiser
    data_recipe: Optional[DataRecipe] = None  # None: the shipped model's (recipes.data_recipe) or the default
    notes: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    steps: int
    elapsed_s: float
    first_loss: float
    last_loss: float
    card_path: Optional[Path]
    rank: int
    world_size: int


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _autocast(precision: str, device: torch.device):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16), "bf16"
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False), "fp32"
    raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 of all learnable parameters (to check that DDP ranks hold the same weights; BatchNorm
    running statistics are per-rank between DDP's buffer broadcasts and are left out)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


OUTPUT_NORM = "conv8.conv.4."  # the dense networks' last BatchNorm (scores = ReLU(BN(conv)))


def _parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list:
    head = [p for n, p in model.named_parameters() if n.startswith(OUTPUT_NORM)]
    rest = [p for n, p in model.named_parameters() if not n.startswith(OUTPUT_NORM)]
    groups = [{"params": rest, "lr_multiplier": 1.0}]
    if head:
        groups.append({"params": head, "lr_multiplier": config.output_norm_lr_multiplier})
    return groups


def _load_initial_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path / checkpoint.CHECKPOINT if path.is_dir() else path), device="cpu")
    model.load_state_dict(checkpoint.model_tensors(state), strict=True)


def _training_plan(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    """Plan (and log) how `model` trains, and apply it: a scan backend that has gradients, always."""
    from nnmamba.execution_plan import make_plan
    from nnmamba.inference.plan_application import apply_plan

    precision = _autocast(config.precision, device)[1]
    plan = make_plan(model, device, torch.bfloat16 if precision == "bf16" else torch.float32, mode="training",
                     scan_backend=config.scan_backend, channels_last=config.channels_last)
    apply_plan(model, plan)
    return plan


def _load_training_cases(config: TrainConfig) -> tuple:
    """(real training cases, label-map cases), both at the card's spacing."""
    card = config.card
    spacing = tuple(float(s) for s in card["input"]["spacing_mm"])
    cases = [resample_case(c, spacing) for c in load_cases(config.data_dir, card["task"], "train")]
    label_maps = [resample_case(c, spacing) for c in load_cases(config.data_dir, card["task"], "label_maps")]
    return cases, label_maps


def _recipe(config: TrainConfig) -> DataRecipe:
    return config.data_recipe or data_recipe(config.card["name"], config.card["task"])


def optimisation_step(network, model: torch.nn.Module, problem, optimizer, x: torch.Tensor, target,
                      autocast) -> torch.Tensor:
    """One optimiser step: `network` (the model, or its DDP wrapper) under `autocast`, the problem's
    loss, backward, gradient-norm clipping of `model`'s parameters at 12, Adam. Returns the loss."""
    with autocast:
        output = network(x)
    loss = problem.loss(output, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
    optimizer.step()
    return loss.detach()


def train(config: TrainConfig) -> TrainResult:
    from nnmamba.execution_plan import to_plan_layout
    from nnmamba.networks import build_network

    context = distributed.setup(config.device)
    _seed_everything(config.seed)  # same initial weights on every rank
    card = config.card
    model = build_network(card["network"], scan_backend=config.scan_backend, **card["hyperparameters"])
    model.to(context.device)
    plan = _training_plan(model, config, context.device)
    if config.init_from is not None:
        _load_initial_weights(model, Path(config.init_from))
    optimizer = torch.optim.AdamW(_parameter_groups(model, config), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    out_dir = Path(config.out_dir)
    step, elapsed_before = 0, 0.0
    losses_log: list = []
    hardware_log: list = []   # [device, first step, last step, seconds] per run (resumes may move)
    heldout_log: list = []
    warm_from = 0             # the step the learning-rate warm-up counts from
    saved_tensors: dict = {}  # the full checkpoint's other tensors (the weight average)
    if config.resume and checkpoint.has_checkpoint(out_dir):
        state = checkpoint.load_checkpoint(out_dir, model, optimizer)
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        losses_log = state.get("losses", [])
        hardware_log = state.get("hardware_log", [])
        heldout_log = state.get("heldout", [])
        warm_from = step if not state.get("optimizer_restored", True) else 0
        saved_tensors = state.get("extra_tensors", {})
        if context.is_main:
            log.info("resumed from %s at step %d (%.0f s trained)", out_dir, step, elapsed_before)
    average = _weight_average(model, config, saved_tensors, out_dir)
    answer = average.network if average is not None else model   # what is checked, saved and shipped
    _seed_everything(config.seed + 1000 * context.rank + step)  # different samples per rank/resume

    cases, label_maps = _load_training_cases(config)
    problem = make_problem(card, cases, context.device, seed=config.seed + 1000 * context.rank + step,
                           sigma_mm=config.sigma_mm, recipe=_recipe(config), label_maps=label_maps)
    clock = StepClock(context.device)
    check = HeldoutCheck(card, config.data_dir, out_dir / "heldout_check", config.heldout_every,
                         str(context.device))
    check.history = heldout_log
    network = model
    if context.enabled:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[context.device.index] if context.device.type == "cuda" else None)
    autocast, precision = _autocast(config.precision, context.device)
    if context.is_main:
        log.info("training %s (%s) on %d case(s) + %d label map(s), %d process(es), %s, %s, patch %s", card["name"],
                 card["network"], len(cases), len(label_maps), context.world_size, _device_name(context.device),
                 precision, card["input"]["patch_size"])

    progress = None
    if context.is_main and config.progress_bar:
        from tqdm import tqdm
        progress = tqdm(total=int(config.time_budget_s), initial=int(min(elapsed_before, config.time_budget_s)),
                        unit="s", desc=f"train {card['name']}", dynamic_ncols=True)
    start = time.perf_counter()
    last_checkpoint = start
    first_loss = losses_log[0][1] if losses_log else math.nan
    running, running_n, last_loss = 0.0, 0, math.nan
    stop_reason = None
    network.train()
    while True:
        elapsed = elapsed_before + time.perf_counter() - start
        done = (step >= config.max_steps or elapsed >= config.time_budget_s
                or time.perf_counter() - start >= config.run_budget_s)
        if distributed.any_rank(done or stop_reason is not None, context):
            break
        # Step-based schedule when a step count is given (reproducible), else time-based.
        fraction = min(1.0, step / config.max_steps if config.max_steps < UNLIMITED_STEPS
                       else elapsed / config.time_budget_s)
        warmup = _warmup_factor(step - warm_from, config)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * group["lr_multiplier"] * warmup * (1.0 - fraction) ** 0.9
        step_start = clock.synchronise()
        x, target = problem.batch(config.batch_size)
        x = to_plan_layout(x, plan)
        data_end = clock.synchronise()
        value = float(optimisation_step(network, model, problem, optimizer, x, target, autocast))
        if average is not None:
            average.update(model)
        step += 1
        clock.add(data_end - step_start, time.perf_counter() - step_start)
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {step}; lower the learning "
                                     f"rate or use --precision fp32")
        if math.isnan(first_loss):
            first_loss = value
        running += value
        running_n += 1
        if step % config.log_every == 0:
            last_loss = distributed.mean_over_ranks(running / running_n, context)
            running, running_n = 0.0, 0
            losses_log.append([step, last_loss, round(elapsed, 1)])
            data_ms, step_ms = clock.window()
            if context.is_main:
                log.info("step %d: loss %.4f; data %.1f ms of %.1f ms per step (%.0f %%)", step, last_loss,
                         data_ms, step_ms, 100 * data_ms / max(step_ms, 1e-9))
            if progress is not None:
                progress.set_postfix(step=step, loss=f"{last_loss:.4f}", data=f"{data_ms:.0f}/{step_ms:.0f}ms")
        if progress is not None:
            progress.n = int(min(elapsed, config.time_budget_s))
            progress.refresh()
        if context.is_main and check.due(step):
            summary = check.run(step, answer)
            if config.stop_on_collapse:
                stop_reason = collapse_reason(card["task"], summary, last_loss, _class_count(card), step,
                                              config.collapse_min_step)
            if stop_reason:
                log.error("stopping: %s", stop_reason)
        if context.is_main and time.perf_counter() - last_checkpoint > config.checkpoint_every_s:
            _save_state(out_dir, model, optimizer, average, {"step": step, "elapsed_s": elapsed, "losses": losses_log,
                                                    "hardware_log": _with_this_run(hardware_log, context, step,
                                                                                   elapsed - elapsed_before, clock),
                                                    "heldout": check.history})
            last_checkpoint = time.perf_counter()
    if progress is not None:
        progress.close()
    if running_n:
        last_loss = distributed.mean_over_ranks(running / running_n, context)
        losses_log.append([step, last_loss, round(elapsed, 1)])
    elapsed = elapsed_before + time.perf_counter() - start
    hardware_log = _with_this_run(hardware_log, context, step, elapsed - elapsed_before, clock)
    if losses_log:  # report windows (mean over log_every steps and all ranks), not single steps
        first_loss = losses_log[0][1]

    card_path = None
    digest = parameter_digest(model)
    (out_dir / f"rank{context.rank}.json").parent.mkdir(parents=True, exist_ok=True)
    (out_dir / f"rank{context.rank}.json").write_text(json.dumps(
        {"rank": context.rank, "world_size": context.world_size, "steps": step, "first_loss": first_loss,
         "last_loss": last_loss, "losses": losses_log, "parameter_sha256": digest, "timing": clock.totals(),
         "execution_plan": plan.as_dict()}))
    if context.is_main:
        _save_state(out_dir, model, optimizer, average, {"step": step, "elapsed_s": elapsed, "losses": losses_log,
                                                "hardware_log": hardware_log, "heldout": check.history,
                                                "stopped": stop_reason})
        card_path = _write_model(config, answer, average, context, step, elapsed, precision, losses_log, hardware_log, check.history,
                                 problem.augmentation_description, plan.as_dict())
        log.info("trained %d steps in %.0f s; loss %.4f -> %.4f; data %s; wrote %s", step, elapsed, first_loss,
                 last_loss, clock.totals(), card_path)
    distributed.teardown(context)
    return TrainResult(step, elapsed, first_loss, last_loss, card_path, context.rank, context.world_size)


def _warmup_factor(steps_since_start: int, config: TrainConfig) -> float:
    """Linear warm-up over `warmup_steps`, at most a tenth of a fixed step schedule."""
    length = config.warmup_steps
    if config.max_steps < UNLIMITED_STEPS:
        length = min(length, config.max_steps // 10)
    return 1.0 if length <= 0 else min(1.0, (steps_since_start + 1) / length)


def _class_count(card: dict) -> int:
    return len(card.get("classes", [])) if card["task"] == "classification" else 0


def _weight_average(model, config: TrainConfig, saved_tensors: dict, out_dir: Path) -> Optional[WeightAverage]:
    """The run's weight average (None when off), made after any weights are loaded: an exact resume
    takes up the average saved in the full checkpoint; otherwise it starts from the loaded weights."""
    if config.weight_average_decay <= 0:
        return None
    average = WeightAverage(model, config.weight_average_decay)
    if average.load_state_tensors(saved_tensors):
        log.info("resumed the weight average from %s", out_dir)
    return average


def _save_state(out_dir: Path, model, optimizer, average: Optional[WeightAverage], state: dict) -> None:
    """The full checkpoint (exact resume: the model, its optimiser and the weight average, one file)
    and a weights-only copy of the answer (the average when there is one) in out_dir/weights_state/:
    what a run brings back from another machine and the repository keeps."""
    checkpoint.save_checkpoint(out_dir, model, optimizer, state,
                               average.state_tensors() if average is not None else None)
    checkpoint.save_weights_checkpoint(out_dir / "weights_state", average.network if average else model, state)


def _with_this_run(hardware_log: list, context, step: int, seconds: float, clock: StepClock) -> list:
    """The hardware log with this run's entry (steps since the last entry) appended, if it has any:
    what the final state records, and each periodic one too, so a run cut off keeps its device and
    time."""
    start_step = hardware_log[-1][2] if hardware_log else 0
    if step <= start_step:
        return hardware_log
    timing = clock.totals()
    return hardware_log + [[_device_name(context.device), start_step, step, round(seconds, 1),
                            timing["data_ms_per_step"], timing["step_ms_per_step"]]]


def _write_model(config: TrainConfig, model, average: Optional[WeightAverage], context, steps: int, elapsed: float, precision: str,
                 losses_log: list, hardware_log: list, heldout_log: list, augmentation: str, execution_plan: dict) -> Path:
    from nnmamba.models import save_model

    card = json.loads(json.dumps(config.card))
    manifest = read_manifest(config.data_dir)
    split = manifest["splits"][card["task"]]
    card["trained"] = True
    card["training"] = {
        "data": {"train": [dict(case=c, **manifest["cases"][c]) for c in split["train"]],
                 "label_maps": [dict(case=c, **manifest["cases"][c]) for c in split.get("label_maps", [])],
                 "heldout": list(split["heldout"]),
                 "ground_truth": manifest["ground_truth"][card["task"]],
                 "sources": {k: v for k, v in manifest["sources"].items()
                             if any(manifest["cases"][c]["source"] == k
                                    for c in split["train"] + split.get("label_maps", []))},
                 "prepared_by": "scripts/prepare_data.py"},
        "recipe": {"steps": steps, "batch_size_per_process": config.batch_size, "processes": context.world_size,
                   "optimizer": "AdamW", "learning_rate": config.learning_rate,
                   "warmup_steps": config.warmup_steps,
                   "output_batchnorm_lr_multiplier": config.output_norm_lr_multiplier,
                   "initialised_from": str(config.init_from) if config.init_from else None, "schedule": "poly 0.9 over the " + ("steps" if config.max_steps < UNLIMITED_STEPS else "time budget"),
                   "weight_decay": config.weight_decay, "precision": precision, "seed": config.seed,
                   "loss": {"segmentation": "cross-entropy + soft Dice over the classes present (batch Dice), "
                                            "with deep supervision where the network has it",
                            "landmarks": describe_landmark_loss(config.sigma_mm or LANDMARK_SIGMA_MM),
                            "classification": f"cross-entropy, label smoothing {_recipe(config).label_smoothing:g}; "
                                              f"classes balanced over real and generated samples"}[card["task"]],
                   "augmentation": augmentation,
                   "weight_average": average.describe() if average is not None else None,
                   "time_budget_s": config.time_budget_s},
        **progress_record(elapsed, losses_log, hardware_log, heldout_log, context.world_size),
        "execution_plan": execution_plan,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": _git_commit(),
        **config.notes,
    }
    return save_model(card, model, config.out_dir, overwrite=True).path
