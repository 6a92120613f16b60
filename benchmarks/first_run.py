"""One fresh process of benchmarks/predict_e2e.py: a first run as a user meets it, broken down by stage.

    python benchmarks/first_run.py ours --volume ct.nrrd --card models/bench-ct-seg/model.json \
        --out out/ --device cuda --precision auto --runs first second worker --json ours.json
    python benchmarks/first_run.py upstream --upstream .upstream/nnMamba.py --volume ct.nrrd \
        --card .../model.json --out out/ --json upstream.json

Started by predict_e2e.py with TRITON_CACHE_DIR / NNMAMBA_CACHE_DIR pointing at an empty folder (a
cold cache) or at the folder an earlier process filled (a warm one). Every second from the first line
of this file is counted in one stage (exclusive: a Triton compilation inside the probe check counts
as compilation, not as probe):

  import          torch, the engine, SimpleITK (and mamba-ssm + the upstream file for upstream)
  cuda_init       the CUDA context (what the first tensor on the card would pay anyway)
  load            model card + safetensors read, network built (for upstream: built, weights loaded)
  plan            the execution plan applied: BatchNorm folding, fused copy
  triton_compile  Triton compilations, or loads of compiled kernels from the on-disk cache
  probe           the planned copy checked against the eager network
  graph_capture   CUDA-graph captures (with their warm-up forwards)
  read, resample, network, postprocess, write   the pipeline's own stages
  other           the rest of the run (argument parsing, the plan's logging, output checks)

cuDNN autotuning has no hook: predict_e2e.py measures it as the difference of a run with
`--cudnn-benchmark` (cudnn.benchmark on, as `nnmamba predict` had it before) and one without.
Runs: `first` (`nnmamba predict`, the process's first), `second` (`nnmamba predict` again in the same
process), `worker` (one Predictor kept for two jobs, as the worker keeps it: the second job's seconds).
"""

import time

PROCESS_START = time.time()
START = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# (module, attribute path, stage) of what is timed; a hook whose target is gone is reported, not fatal
OUR_HOOKS = (
    ("nnmamba.models", "load_model", "load"),
    ("nnmamba.inference.planned_network", "apply_plan", "plan"),
    ("nnmamba.inference.planned_network", "eager_reference", "probe"),
    ("nnmamba.inference.planned_network", "check_against_eager", "probe"),
    ("nnmamba.inference.planned_network", "check_finite", "probe"),
    ("nnmamba.inference.cuda_graph", "_Captured.__init__", "graph_capture"),
    ("nnmamba.io", "read_volume", "read"),
    ("nnmamba.inference.predictor", "Predictor._prepare", "resample"),
    ("nnmamba.inference.predictor", "sliding_window", "network"),
    ("nnmamba.tasks.segmentation", "SegmentationTask.decode", "postprocess"),
    ("nnmamba.tasks.landmarks", "LandmarksTask.decode", "postprocess"),
    ("nnmamba.tasks.classification", "ClassificationTask.decode", "postprocess"),
    ("nnmamba.io", "write_results", "write"),
)
TRITON_HOOK = ("triton.runtime.jit", "JITFunction._do_compile", "triton_compile")
OUR_IMPORTS = ("nnmamba.cli", "nnmamba.commands.predict", "nnmamba.inference", "nnmamba.inference.predictor",
               "nnmamba.io")
UPSTREAM_IMPORTS = ("mamba_ssm", "nnmamba.io", "nnmamba.io.volumes", "nnmamba.io.outputs",
                    "nnmamba.inference.normalization", "nnmamba.inference.resampling",
                    "nnmamba.inference.sliding_window")


class Ledger:
    """Exclusive seconds per stage: a hooked call's time minus that of the hooked calls inside it.
    Waits for the device at each boundary, so GPU work counts in the stage that queued it."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self._inner = []  # per open stage: seconds spent in hooked calls inside it

    def _sync(self):
        if self.cuda:
            import torch

            if not torch.cuda.is_current_stream_capturing():   # a wait inside a graph capture is an error
                torch.cuda.synchronize()

    @contextmanager
    def stage(self, name: str):
        self._sync()
        start = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            self._sync()
            elapsed = time.perf_counter() - start
            inner = self._inner.pop()
            self.seconds[name] += elapsed - inner
            self.calls[name] += 1
            if self._inner:
                self._inner[-1] += elapsed

    def snapshot(self) -> dict:
        return {"seconds": dict(self.seconds), "calls": dict(self.calls)}

    def hook(self, module_name: str, path: str, stage: str) -> bool:
        """Wrap `module_name`.`path` (function, method or staticmethod) in stage `name`; False if absent."""
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            return False
        *parents, attr = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent, None)
            if owner is None:
                return False
        # a module's lazy names (nnmamba.io's __getattr__) need getattr; a class's staticmethods getattr_static
        raw = getattr(owner, attr, None) if inspect.ismodule(owner) else inspect.getattr_static(owner, attr, None)
        if raw is None:
            return False
        function = raw.__func__ if isinstance(raw, staticmethod) else raw

        @functools.wraps(function)
        def timed(*args, **kwargs):
            with self.stage(stage):
                return function(*args, **kwargs)

        setattr(owner, attr, staticmethod(timed) if isinstance(raw, staticmethod) else timed)
        return True


def difference(after: dict, before: dict) -> dict:
    """Seconds and calls per stage between two snapshots."""
    return {key: {stage: after[key].get(stage, 0) - before[key].get(stage, 0) for stage in after[key]
                  if after[key].get(stage, 0) != before[key].get(stage, 0)} for key in after}


def timed_run(ledger: Ledger, run) -> dict:
    """{"total_s", "stages": exclusive seconds (with "other"), "calls"} of run()."""
    before = ledger.snapshot()
    ledger._sync()
    start = time.perf_counter()
    run()
    ledger._sync()
    total = time.perf_counter() - start
    delta = difference(ledger.snapshot(), before)
    stages = dict(delta["seconds"])
    stages["other"] = total - sum(stages.values())
    return {"total_s": total, "stages": stages, "calls": delta["calls"]}


def count_kernels(folder) -> int:
    folder = Path(folder) if folder else None
    return sum(1 for p in folder.iterdir() if p.is_dir()) if folder and folder.is_dir() else 0


def run_ours(args, ledger: Ledger, result: dict) -> None:
    from e2e_common import predict_argv

    from nnmamba.cli import main

    def predict(out: Path):
        code = main(predict_argv(args.volume, args.card, out, args.precision, args.tta, args.device))
        if code != 0:
            raise RuntimeError(f"nnmamba predict exited with {code}")

    if "first" in args.runs:
        result["runs"]["first"] = timed_run(ledger, lambda: predict(args.out / "first"))
        result["runs"]["first"]["stages"].update(result.pop("startup"))
        result["runs"]["first"]["total_s"] += sum(result["runs"]["first"]["stages"][s] for s in ("import", "cuda_init"))
    if "second" in args.runs:
        result["runs"]["second"] = timed_run(ledger, lambda: predict(args.out / "second"))
    if "worker" in args.runs:
        result["runs"]["worker"] = worker_jobs(args, ledger)


def worker_jobs(args, ledger: Ledger) -> dict:
    """The second of two jobs on one kept Predictor (what a worker that has served a job pays)."""
    from nnmamba.commands.predict import parse_models
    from nnmamba.inference import InferenceOptions, Predictor
    from nnmamba.inference.backend_flags import configure_for_inference
    from nnmamba.io import read_volume, write_results
    from nnmamba.tasks import BUILTIN

    predictor = Predictor(InferenceOptions(device=args.device, precision=args.precision, tta=args.tta))
    configure_for_inference(predictor.device)
    models = parse_models([f"segmentation={args.card}"]) if args.card else {}
    tasks = list(models) or list(BUILTIN)

    def job(out: Path):
        volume = read_volume([args.volume])
        results = predictor.run(volume, tasks, models or None, checked=True)
        write_results(results, volume, out, "worker", overwrite=True, summary=False)

    timed_run(ledger, lambda: job(args.out / "worker"))
    return timed_run(ledger, lambda: job(args.out / "worker"))


def run_upstream(args, ledger: Ledger, result: dict) -> None:
    """Upstream nnMambaSeg (its file + mamba-ssm) built in this fresh process, the card's weights
    loaded into it, then the pipeline twice on the kept network."""
    from e2e_common import CONFIG, run_upstream as pipeline
    from gpu import load_upstream
    from safetensors.torch import load_file

    from nnmamba.model_card import find_model

    card = find_model(str(args.card))
    startup = result.pop("startup")
    with ledger.stage("import"):
        module = load_upstream(args.upstream)
    with ledger.stage("load"):
        network = module.nnMambaSeg(**CONFIG)
        network.load_state_dict(load_file(str(card.weights_path)), strict=True)
        network = network.to(args.device).eval()
    startup["import"] += ledger.seconds.pop("import")
    startup["load"] = ledger.seconds.pop("load")
    for name in ("first", "second"):
        before = ledger.snapshot()
        times = pipeline(args.volume, card, network, args.out / name, args.tta, args.device)
        run = {"total_s": times.pop("total_s"), "stages": {k[:-2]: v for k, v in times.items()},
               "calls": difference(ledger.snapshot(), before)["calls"]}
        if name == "first":
            run["stages"].update(startup)
            run["total_s"] += sum(startup.values())
        run["stages"]["other"] = run["total_s"] - sum(run["stages"].values())
        result["runs"][name] = run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=["ours", "upstream"])
    parser.add_argument("--volume", type=Path, required=True)
    parser.add_argument("--card", type=Path, help="model card (default for ours: every shipped task)")
    parser.add_argument("--upstream", type=Path, help="upstream nnMamba.py (side upstream)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--runs", nargs="+", default=["first", "second"], choices=["first", "second", "worker"])
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="cuDNN autotuning on (as `nnmamba predict` had it before): measures its cost")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)

    cuda = args.device.startswith("cuda")
    ledger = Ledger(cuda=False)  # no device waits before the CUDA context exists
    with ledger.stage("import"):
        import torch  # noqa: F401

        import SimpleITK  # noqa: F401
        # what each side's pipeline imports (upstream's: the engine's I/O and CPU pre/post-processing)
        modules = (OUR_IMPORTS if args.side == "ours" else UPSTREAM_IMPORTS)
        for module in modules:
            importlib.import_module(module)
    startup = {"import": time.perf_counter() - START}  # from the first line: the imports above and below
    ledger.seconds.clear()
    with ledger.stage("cuda_init"):
        if cuda:
            torch.zeros(1, device=args.device)
    startup["cuda_init"] = ledger.seconds.pop("cuda_init")
    ledger.cuda = cuda
    hooks = [TRITON_HOOK] + (list(OUR_HOOKS) if args.side == "ours" else [])
    unhooked = [f"{m}.{p}" for m, p, stage in hooks if not ledger.hook(m, p, stage)]
    if args.cudnn_benchmark:
        from nnmamba.inference import backend_flags

        configure = backend_flags.configure_for_inference

        def with_autotuning(device):
            settings = configure(device)
            torch.backends.cudnn.benchmark = True
            return dict(settings, **{"cudnn.benchmark": True})

        backend_flags.configure_for_inference = with_autotuning
    import os

    cache = os.environ.get("TRITON_CACHE_DIR")
    result = {"side": args.side, "device": args.device, "precision": args.precision,
              "cudnn_benchmark": args.cudnn_benchmark, "process_start_epoch": PROCESS_START,
              "triton_cache_dir": cache, "cached_kernels_before": count_kernels(cache),
              "unhooked": unhooked, "startup": startup, "runs": {},
              "device_name": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__}
    (run_ours if args.side == "ours" else run_upstream)(args, ledger, result)
    result["cached_kernels_after"] = count_kernels(cache)
    args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
