"""The paper's Tables I and II in miniature: ``python tools/experiments.py --table mini [--fast] --out DIR``.

For every host (LatentMIM, I-JEPA, and MAE when its recipes exist) and every row of Tables I-II (MR-, HR-,
SA-model, SA with false HR), and for each seed, one CPU-sized pretraining (``tools/train.py`` with the
row's recipe and ``gin/presets/cpu_mini.gin``, in its own process), then the scaled-down linear probe of
:mod:`kit.eval.minitask` on the synthetic downstream task. Two reference rows bound the table: the
frozen random-init encoder of each host (the floor: the recipe run for 0 steps) and a small supervised
CNN on the MR images (the ceiling).

Every run lives in ``RUNS/<row key>/seed<k>/`` (default ``RUNS = OUT/runs``, git-ignored), holding the
training folder, ``probe.json`` and a ``DONE`` marker written last: a killed experiment started again
skips finished runs and resumes a partial pretraining from its newest checkpoint (``train.py --resume``).
At the end ``OUT`` holds ``report.md`` (the paper's layout, mean +- std over seeds, the paired
differences SA - MR and real HR - false HR with bootstrap intervals over seeds and test tiles),
``results.csv`` (one line per run), ``summary.csv``, ``differences.csv``, ``tile_confusions.npz`` (what
the intervals are computed from) and the figures ``bars.png``, ``cluster_maps.png``, ``loss_curves.png``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from kit.data.synthetic import SyntheticScenes  # noqa: E402
from kit.eval.minitask import CLASSES, MiniTask  # noqa: E402

HOSTS = (("latentmim", "LatentMIM"), ("ijepa", "I-JEPA"), ("mae", "MAE"))
# (row id, Table I/II label, recipe stem pattern)
ROWS = (("mr", "MR-model", "{host}_mr"), ("hr", "HR-model", "{host}_hr"), ("sa", "SA-model", "{host}_sa"),
        ("falsehr", "SA w/ false HR", "{host}_sa_falsehr"))
INIT_ROW = ("init", "random init (floor)")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one experiment (``full``: the committed table; ``fast``: one seed; ``tiny``: the tests' plumbing check)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    preset: str = "gin/presets/cpu_mini.gin"
    steps: int = 250
    pretrain_pairs: int = 512
    pretrain_mr_size: int = 48
    task: MiniTask = MiniTask()
    probe_epochs: int = 40
    probe_batch: int = 16
    ceiling_epochs: int = 15
    figure_mr_size: int = 96
    bootstrap: int = 2000
    extra_params: tuple[str, ...] = ()

    @property
    def pretrain(self) -> SyntheticScenes:
        return SyntheticScenes(mr_size=self.pretrain_mr_size, num_pairs=self.pretrain_pairs, seed=0)

    def gin_params(self, seed: int) -> list[str]:
        return [f"train.seed = {seed}", f"train.total_steps = {self.steps}", "train.keep_checkpoints = 1",
                f"SyntheticScenes.num_pairs = {self.pretrain_pairs}", f"SyntheticScenes.mr_size = {self.pretrain_mr_size}",
                "SyntheticScenes.seed = 0", *self.extra_params]


SIZES = {
    "full": Settings(),
    "fast": Settings(seeds=(0,)),
    "tiny": Settings(seeds=(0,), preset="gin/presets/test_tiny.gin", steps=2, pretrain_pairs=24, pretrain_mr_size=32,
                     task=MiniTask(mr_size=16, num_train=12, num_val=6, num_test=6), probe_epochs=2, probe_batch=4,
                     ceiling_epochs=1, figure_mr_size=32, bootstrap=50),
}


@dataclasses.dataclass(frozen=True)
class Run:
    """One pretraining + probe (or a floor / ceiling run)."""

    host: str  # "latentmim", ... or "" for the ceiling
    row: str  # "mr", "hr", "sa", "falsehr", "init", "ceiling"
    seed: int

    @property
    def key(self) -> str:
        return "ceiling" if self.row == "ceiling" else f"{self.host}_{self.row}"

    @property
    def recipe(self) -> str | None:
        """The row's recipe; a host without a false-HR recipe runs its SA recipe with :attr:`extra_params`."""
        if self.row == "ceiling":
            return None
        stem = "{host}_mr" if self.row == "init" else dict((r, p) for r, _, p in ROWS)[self.row]
        if self.row == "falsehr" and not _recipe_exists(self.host, stem):
            stem = "{host}_sa"
        return f"gin/{stem.format(host=self.host)}.gin"

    @property
    def extra_params(self) -> list[str]:
        """What ``gin/<host>_sa_falsehr.gin`` adds to the SA recipe, for hosts that ship no such file."""
        if self.row == "falsehr" and not _recipe_exists(self.host, "{host}_sa_falsehr"):
            return ["PairedTiles.false_hr = 'bicubic'"]
        return []


def available_hosts() -> list[str]:
    """Hosts with at least their MR recipe ``gin/<host>_mr.gin``."""
    return [h for h, _ in HOSTS if _recipe_exists(h, "{host}_mr")]


def _recipe_exists(host: str, pattern: str) -> bool:
    return (REPO_ROOT / "gin" / f"{pattern.format(host=host)}.gin").is_file()


def plan(settings: Settings, hosts: list[str]) -> list[Run]:
    """Every run of the experiment, seed by seed (so a stopped full run holds complete ``--fast`` results):
    the ceiling, each host's floor, then each host's table rows whose recipe exists (false HR always: see
    :attr:`Run.extra_params`)."""
    runs = []
    for s in settings.seeds:
        runs += [Run("", "ceiling", s)] + [Run(h, "init", s) for h in hosts]
        runs += [Run(h, r, s) for h in hosts for r, _, p in ROWS if _recipe_exists(h, p) or r == "falsehr"]
    return runs


def run_dir(runs_root: Path, run: Run) -> Path:
    return runs_root / run.key / f"seed{run.seed}"


def _pretrain(run: Run, workdir: Path, settings: Settings, python: str) -> None:
    """``tools/train.py`` for one run in a subprocess, resuming a partial run; a per-run tqdm bar follows its log."""
    from tqdm.auto import tqdm

    steps = 0 if run.row == "init" else settings.steps
    cmd = [python, str(REPO_ROOT / "tools" / "train.py"), "--gin", run.recipe, "--gin", settings.preset,
           "--workdir", str(workdir), "--max_steps", str(steps)]
    if list((workdir / "checkpoints").glob("ckpt-*.pt")):
        cmd.append("--resume")  # a killed run continues from its newest checkpoint
    elif any((workdir / p).exists() for p in ("export", "summary.json", "logs")):
        cmd.append("--overwrite")  # killed before its first checkpoint: the remains are moved aside, not deleted
    for p in settings.gin_params(run.seed) + run.extra_params:
        cmd += ["--gin_param", p]
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "experiment.log"
    metrics = workdir / "logs" / "metrics.jsonl"
    with open(log, "a") as f, tqdm(total=steps, desc=f"{run.key} seed {run.seed}", unit="step", leave=False) as bar:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT,
                                env={"OMP_NUM_THREADS": "1", **os.environ, "PYTHONPATH": str(REPO_ROOT)})
        while proc.poll() is None:
            time.sleep(1.0)
            bar.update(max(0, _last_step(metrics) - bar.n))
        bar.update(max(0, _last_step(metrics) - bar.n))
    if proc.returncode != 0 or not (workdir / "export" / "meta.json").is_file():
        tail = "\n  ".join(log.read_text(errors="replace").strip().splitlines()[-15:])
        raise RuntimeError(f"pretraining {run.key} seed {run.seed} failed (exit {proc.returncode}); see {log}:\n  {tail}")


def _pretrained(d: Path, steps: int) -> bool:
    """Whether ``d`` holds a finished pretraining of ``steps`` steps (export written, summary says so)."""
    try:
        summary = json.loads((d / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return (d / "export" / "meta.json").is_file() and int(summary.get("steps", -1)) == steps


def _last_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().strip().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def execute(run: Run, runs_root: Path, settings: Settings, python: str = sys.executable) -> dict:
    """Pretrain (if needed) and probe one run; write ``probe.json`` then ``DONE``; return the result (cached if done)."""
    from kit.eval.minitask import probe_encoder, supervised_ceiling

    d = run_dir(runs_root, run)
    done = d / "DONE"
    if done.is_file():
        return _load_result(d)
    t0 = time.perf_counter()
    if run.row == "ceiling":
        res = supervised_ceiling(settings.task, seed=run.seed, epochs=settings.ceiling_epochs)
    else:
        if not _pretrained(d, 0 if run.row == "init" else settings.steps):  # killed while probing: probe again
            _pretrain(run, d, settings, python)
        res = probe_encoder(d / "export", settings.task, seed=run.seed, epochs=settings.probe_epochs,
                            batch_size=settings.probe_batch)
    res = {**dataclasses.asdict(run), "key": run.key, "seconds": round(time.perf_counter() - t0, 1), **res}
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "tile_confusion.npy", res.pop("tile_confusion").astype(np.int32))
    (d / "probe.json").write_text(json.dumps(res, indent=2))
    for ck in (d / "checkpoints").glob("ckpt-*.pt"):  # the export and logs are what the report needs
        ck.unlink()
    done.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return _load_result(d)


def _load_result(d: Path) -> dict:
    res = json.loads((d / "probe.json").read_text())
    res["tile_confusion"] = np.load(d / "tile_confusion.npy")
    res["dir"] = str(d)
    return res


def run_all(settings: Settings, out: Path, runs_root: Path, hosts: list[str] | None = None,
            python: str = sys.executable, jobs: int = 1) -> list[dict]:
    """Run (or resume) every run of the plan, then write the report, CSVs and figures into ``out``."""
    from kit.eval.minitask import assert_disjoint, load_split
    from mini_report import write_report

    import torch

    # one thread per run: on a shared CPU, more threads than free cores slow a small model many-fold
    # (measured on the loaded 2-core machine: 10 s per step with 2 threads, 0.4 s with 1)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    hosts = hosts if hosts is not None else available_hosts()
    if not hosts:
        raise ValueError("no host has a recipe gin/<host>_mr.gin; nothing to run.")
    assert_disjoint(settings.task, settings.pretrain)
    for split in ("train", "val", "test"):
        load_split(settings.task, split)  # render once, before any timing
    runs = plan(settings, hosts)
    t0 = time.perf_counter()
    count = iter(range(1, len(runs) + 1))

    def one(run: Run) -> dict:
        r = execute(run, runs_root, settings, python)
        print(f"[{next(count)}/{len(runs)}] {run.key} seed {run.seed}: test mIoU {100 * r['test_miou']:.2f} "
              f"({r['seconds']:.0f} s; {time.perf_counter() - t0:.0f} s elapsed)", flush=True)
        return r

    if jobs > 1:  # pretraining runs in subprocesses; threads only wait on them and run the small probes
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(one, runs))
    else:
        results = [one(run) for run in runs]
    write_report(results, settings, hosts, out, runs_root)
    return results


def main(args) -> int:
    """Entry from ``tools/experiments.py --table mini``: ``args.out``, ``args.fast``, ``args.size``, ``args.runs``."""
    size = "fast" if args.fast else (args.size or "full")
    settings = SIZES[size]
    out = Path(args.out)
    runs_root = Path(args.runs) if args.runs else out / "runs"
    print(f"mini experiment ({size}): {len(settings.seeds)} seed(s), {settings.steps} steps per pretraining; "
          f"report -> {out}, runs -> {runs_root}; classes {', '.join(CLASSES)}", flush=True)
    hosts = available_hosts()
    if getattr(args, "hosts", None):
        wanted = [h.strip() for h in args.hosts.split(",") if h.strip()]
        unknown = [h for h in wanted if h not in hosts]
        if unknown:
            raise ValueError(f"--hosts {','.join(unknown)}: no complete recipe set; available: {', '.join(hosts)}.")
        hosts = wanted
    out.mkdir(parents=True, exist_ok=True)
    run_all(settings, out, runs_root, hosts=hosts, python=args.python, jobs=max(1, int(getattr(args, "jobs", 1) or 1)))
    print(f"report: {out / 'report.md'}")
    return 0
