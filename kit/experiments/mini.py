"""The paper's Tables I and II in miniature: ``python tools/experiments.py --table mini [--fast] --out DIR``.

For every host (LatentMIM, I-JEPA, and MAE when its recipes exist) and every row of Tables I-II (MR-, HR-,
SA-model, SA with false HR), and for each seed, one CPU-sized pretraining (``tools/train.py`` with the
row's recipe and ``gin/presets/cpu_mini.gin``, in its own process), then the linear probe of
:mod:`crossscale_kit.eval.minitask` on the synthetic downstream task (inputs resized by the paper's 224/64 first).
Reference rows bound the table: the frozen random-init encoder of each host (its floor: the recipe run
for 0 steps), a linear probe on the raw MR pixels (the floor every encoder must beat), the probed ViT
trained end to end with the same linear head (the fair ceiling) and a small supervised CNN on the MR
images (a stronger ceiling). The hosts in ``Settings.controls`` also get the control rows (SA with a frozen
random HR teacher: what the gram term does as a regulariser, without a learning teacher). For the MR and
SA rows of the first seed the pretraining keeps a checkpoint at each quarter of its steps and each is
probed too: the learning curve.

Every run lives in ``RUNS/<row key>/seed<k>/`` (default ``RUNS = OUT/runs``, git-ignored), holding the
training folder, ``probe.json`` and a ``DONE`` marker written last (the training's output goes to
``RUNS/<row key>/seed<k>.log``): a killed experiment started again
skips finished runs and resumes a partial pretraining from its newest checkpoint (``train.py --resume``).
At the end ``OUT`` holds ``report.md`` (the paper's layout, mean +- std over seeds, the paired
differences SA - MR and real HR - false HR with bootstrap intervals over seeds and test scenes),
``results.csv`` (one line per run), ``summary.csv``, ``differences.csv``, ``tile_confusions.npz`` (what
the intervals are computed from), ``curves.csv`` and the figures ``bars.png``, ``learning_curve.png``,
``collapse.png``, ``cluster_maps.png``, ``loss_curves.png``. The pre-registered plan of the committed
table is ``results/mini/PLAN.md``.
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

from crossscale_kit.data.synthetic import SyntheticScenes
from crossscale_kit.eval.minitask import CLASSES, PAPER_RESIZE, PAPER_TILES, MiniTask

#: the repository the recipes (gin/) and the training CLI (tools/train.py) come from
REPO_ROOT = Path(__file__).resolve().parents[2]

HOSTS = (("latentmim", "LatentMIM"), ("ijepa", "I-JEPA"), ("mae", "MAE"))
# (row id, Table I/II label, recipe stem pattern)
ROWS = (("mr", "MR-model", "{host}_mr"), ("hr", "HR-model", "{host}_hr"), ("sa", "SA-model", "{host}_sa"),
        ("falsehr", "SA w/ false HR", "{host}_sa_falsehr"))
#: control rows (not in the paper; the sixth plan): run for the hosts in ``Settings.controls`` only. ``frozen``:
#: the SA-model whose HR teacher is the student's random init, never updated (``SpatialAffinity.frozen_teacher``)
CONTROL_ROWS = (("frozen", "SA w/ frozen random teacher", "ablations/{host}_sa_frozenteacher"),)
#: what a control row adds to its host's SA recipe when the host ships no recipe file for it
CONTROL_PARAMS = {"frozen": ("SpatialAffinity.frozen_teacher = True",)}
#: each pretraining row's recipe stem pattern
_STEMS = {r: p for r, _, p in ROWS + CONTROL_ROWS}
#: hosts that get the control rows in the committed table (the sixth plan: I-JEPA, whose SA gain came
#: without any gain from real HR)
CONTROLS = ("ijepa",)
INIT_ROW = ("init", "random init (floor)")
#: rows that belong to no host: raw-pixel floor, supervised ViT (fair ceiling), supervised CNN
REFERENCE_ROWS = ("pixels", "vit_ceiling", "ceiling")
#: per-host bindings of the testbed, tuned on MR rows (TUNING.md): the peak learning rate (the preset's 1e-3
#: for I-JEPA) and I-JEPA's encoder width (128: at the preset's 64 its features collapse; section 9)
HOST_PARAMS = (("latentmim", ("lr/WarmupCosine.peak = 3e-3",)), ("mae", ("lr/WarmupCosine.peak = 6e-3",)),
               ("ijepa", ("EMBED_DIM = 128",)))
#: hosts whose encoder differs from the ceiling host's (a binding of HOST_PARAMS changes it): each gets its
#: own supervised ViT of exactly its probed architecture, the fair ceiling of its gap closed
OWN_CEILINGS = ("ijepa",)
#: rows whose first-seed pretraining is probed at every quarter of its steps (the learning curve)
CURVE_ROWS = ("mr", "sa")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one experiment (``full``: the committed table; ``fast``: one seed; ``tiny``: the tests' plumbing check).

    Args:
        seeds: one pretraining and probe per row and seed (the seed of weights, data order, masks and probe).
        preset, steps, pretrain_pairs, pretrain_mr_size: the pretraining (``preset`` is included after each recipe).
        task: the labelled task. probe_epochs, probe_batch (tiles), probe_resize, probe_tiles: the linear
            probe (each scene cut into ``probe_tiles x probe_tiles`` tiles, each resized by ``probe_resize``);
            probe_heads: linear heads fitted per frozen encoder (and on the raw pixels), their test
            confusions pooled (:func:`crossscale_kit.eval.minitask.fit_heads`; the fourth plan: 5).
        ceiling_epochs / vit_ceiling_epochs: the supervised CNN and supervised ViT.
        vit_head_seeded: the supervised ViT's new linear head is drawn from the run's seed. Runs recorded
            without it drew it from whatever the process's shared generator held (not reproducible: it
            depended on the fits running beside it), and are trained again.
        curve_seeds: seeds whose MR and SA pretrainings are also probed at each quarter of their steps.
        curve_quarters: which quarters' checkpoints the learning curve probes (``(1, 2, 3)``; ``--fast``: the midpoint).
        ceiling_host: the host whose encoder architecture the supervised ViT (``vit_ceiling``) copies.
        own_ceilings: hosts whose encoder is not the ceiling host's: each also gets a supervised ViT of its
            own encoder (row ``vit``, key ``<host>_vit``), its fair ceiling.
        controls: hosts that also get the control rows (:data:`CONTROL_ROWS`: SA with a frozen random teacher).
        host_params: ``((host, (binding, ...)), ...)``: bindings added to that host's pretrainings (the
            testbed's per-host learning rate and I-JEPA's width, tuned on MR rows: ``results/mini/TUNING.md``).
        extra_params: gin bindings added to every pretraining.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    preset: str = "gin/presets/cpu_mini.gin"
    steps: int = 1500
    pretrain_pairs: int = 512
    pretrain_mr_size: int = 48
    task: MiniTask = MiniTask(num_test=1024)
    probe_epochs: int = 30
    probe_batch: int = 64
    probe_resize: float = PAPER_RESIZE
    probe_tiles: int = PAPER_TILES
    probe_heads: int = 5
    ceiling_epochs: int = 15
    vit_ceiling_epochs: int = 15
    vit_head_seeded: bool = True
    curve_seeds: tuple[int, ...] = (0,)
    curve_quarters: tuple[int, ...] = (1, 2, 3)
    ceiling_host: str = "mae"
    own_ceilings: tuple[str, ...] = OWN_CEILINGS
    controls: tuple[str, ...] = CONTROLS
    figure_mr_size: int = 96
    bootstrap: int = 2000
    host_params: tuple[tuple[str, tuple[str, ...]], ...] = HOST_PARAMS
    extra_params: tuple[str, ...] = ()

    @property
    def pretrain(self) -> SyntheticScenes:
        return SyntheticScenes(mr_size=self.pretrain_mr_size, num_pairs=self.pretrain_pairs, seed=0)

    @property
    def curve_steps(self) -> tuple[int, ...]:
        """The intermediate steps probed for the learning curve: the checkpoints of the quarters
        :attr:`curve_quarters` of the run (``train.ckpt_every = steps // 4``, so they exist whatever ``steps`` is)."""
        every = max(1, self.steps // 4)
        return tuple(sorted({every * q for q in self.curve_quarters if 0 < q < 4} - {self.steps}))

    def gin_params(self, seed: int, curve: bool = False, host: str = "") -> list[str]:
        every = max(1, self.steps // 4)  # a checkpoint each quarter: resumable, and the learning curve's points
        return [f"train.seed = {seed}", f"train.total_steps = {self.steps}", f"train.ckpt_every = {every}",
                f"train.keep_checkpoints = {5 if curve else 1}",
                f"SyntheticScenes.num_pairs = {self.pretrain_pairs}", f"SyntheticScenes.mr_size = {self.pretrain_mr_size}",
                "SyntheticScenes.seed = 0", *dict(self.host_params).get(host, ()), *self.extra_params]


SIZES = {
    "full": Settings(),
    # one seed at half the budget (pretraining steps and supervised-ViT epochs), half the test scenes, one
    # probe head, the learning curve at its midpoint only and no control row: the pipeline, not the table
    "fast": Settings(seeds=(0,), steps=750, task=MiniTask(num_test=512), probe_heads=1, vit_ceiling_epochs=8,
                     curve_quarters=(2,), controls=()),
    "tiny": Settings(seeds=(0,), preset="gin/presets/test_tiny.gin", steps=4, pretrain_pairs=24, pretrain_mr_size=32,
                     task=MiniTask(mr_size=16, num_train=12, num_val=6, num_test=6), probe_epochs=2, probe_batch=16,
                     ceiling_epochs=1, vit_ceiling_epochs=1, figure_mr_size=32, bootstrap=50, probe_heads=2),
}


@dataclasses.dataclass(frozen=True)
class Run:
    """One pretraining + probe (or a floor / ceiling run)."""

    host: str  # "latentmim", ...; for the reference rows "" (the supervised ViT: the host whose encoder it copies)
    row: str  # "mr", "hr", "sa", "falsehr", a control ("frozen"), "init", "vit" (its own supervised ViT), or a
    # reference row: "pixels", "vit_ceiling", "ceiling"
    seed: int

    @property
    def key(self) -> str:
        return self.row if self.row in REFERENCE_ROWS else f"{self.host}_{self.row}"

    @property
    def recipe(self) -> str | None:
        """The row's recipe; a host without a false-HR or control recipe runs its SA recipe with
        :attr:`extra_params`. A supervised ViT builds its encoder from its host's MR recipe (0 steps)."""
        if self.row in ("ceiling", "pixels"):
            return None
        stem = "{host}_mr" if self.row in ("init", "vit", "vit_ceiling") else _STEMS[self.row]
        if self.row in ("falsehr", *CONTROL_PARAMS) and not _recipe_exists(self.host, stem):
            stem = "{host}_sa"
        return f"gin/{stem.format(host=self.host)}.gin"

    @property
    def pretrains(self) -> bool:
        """Whether the run trains an encoder with the recipe for the table's steps (not a 0-step build)."""
        return self.row not in ("init", "vit", *REFERENCE_ROWS)

    @property
    def extra_params(self) -> list[str]:
        """What ``gin/<host>_sa_falsehr.gin`` (or a control row's recipe) adds to the SA recipe, for hosts that
        ship no such file."""
        if self.row == "falsehr" and not _recipe_exists(self.host, "{host}_sa_falsehr"):
            return ["PairedTiles.false_hr = 'bicubic'"]
        if self.row in CONTROL_PARAMS and not _recipe_exists(self.host, _STEMS[self.row]):
            return list(CONTROL_PARAMS[self.row])
        return []

    def curve(self, settings: Settings) -> bool:
        """Whether this run is probed at each quarter of its pretraining (the learning curve)."""
        return self.row in CURVE_ROWS and self.seed in settings.curve_seeds and bool(settings.curve_steps)


def available_hosts() -> list[str]:
    """Hosts with at least their MR recipe ``gin/<host>_mr.gin``."""
    return [h for h, _ in HOSTS if _recipe_exists(h, "{host}_mr")]


def _recipe_exists(host: str, pattern: str) -> bool:
    return (REPO_ROOT / "gin" / f"{pattern.format(host=host)}.gin").is_file()


def plan(settings: Settings, hosts: list[str]) -> list[Run]:
    """Every run of the experiment, seed by seed (a stopped run holds whole seeds): a host's own supervised ViT
    (the longest single run), each host's table rows whose recipe exists (false HR always: see
    :attr:`Run.extra_params`), the control rows of the hosts in ``settings.controls``, the reference rows, then
    each host's floor. The longest runs of a seed come first, so that parallel jobs finish together."""
    ceiling_host = settings.ceiling_host if settings.ceiling_host in hosts else hosts[0]
    runs = []
    for s in settings.seeds:
        own = [Run(h, "vit", s) for h in hosts if h in settings.own_ceilings and h != ceiling_host]
        table = [Run(h, r, s) for h in hosts for r, _, p in ROWS if _recipe_exists(h, p) or r == "falsehr"]
        table += [Run(h, r, s) for h in hosts if h in settings.controls and _recipe_exists(h, "{host}_sa")
                  for r, _, _ in CONTROL_ROWS]
        runs += own + table + [Run(ceiling_host, "vit_ceiling", s), Run("", "ceiling", s), Run("", "pixels", s)]
        runs += [Run(h, "init", s) for h in hosts]
    return runs


def run_dir(runs_root: Path, run: Run) -> Path:
    return runs_root / run.key / f"seed{run.seed}"


def _pretrain(run: Run, workdir: Path, settings: Settings, python: str) -> None:
    """``tools/train.py`` for one run in a subprocess, resuming a partial run; a per-run tqdm bar follows its log."""
    from tqdm.auto import tqdm

    steps = settings.steps if run.pretrains else 0
    cmd = [python, str(REPO_ROOT / "tools" / "train.py"), "--gin", run.recipe, "--gin", settings.preset,
           "--workdir", str(workdir), "--max_steps", str(steps)]
    if list((workdir / "checkpoints").glob("ckpt-*.pt")):
        cmd.append("--resume")  # a killed run continues from its newest checkpoint
    elif any((workdir / p).exists() for p in ("export", "summary.json", "logs")):
        cmd.append("--overwrite")  # killed before its first checkpoint: the remains are moved aside, not deleted
    for p in settings.gin_params(run.seed, curve=run.curve(settings), host=run.host) + run.extra_params:
        cmd += ["--gin_param", p]
    workdir.parent.mkdir(parents=True, exist_ok=True)
    log = experiment_log(workdir)  # beside the run folder: train.py refuses a fresh run in a folder with foreign files
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


# Fields of Settings that only choose which runs exist or how the report is drawn; every other field
# decides a run's numbers and goes into its settings record.
_NOT_RUN_SETTINGS = ("seeds", "curve_seeds", "curve_quarters", "bootstrap", "figure_mr_size")
#: the fields that decide a pretraining (its encoder); a run folder whose record differs in one is refused
PRETRAIN_SETTINGS = ("preset", "steps", "pretrain_pairs", "pretrain_mr_size", "host_params", "extra_params")
_PROBE_SETTINGS = ("task", "probe_epochs", "probe_batch", "probe_resize", "probe_tiles", "probe_heads")
#: the value a field had in records written before it existed (the protocol of those runs)
_LEGACY_SETTINGS = {"probe_heads": 1, "vit_head_seeded": False}


def result_settings(run: "Run") -> tuple[str, ...]:
    """The Settings fields that decide ``run``'s result: its pretraining (if any) and its probe or training."""
    if run.row == "ceiling":
        return ("task", "ceiling_epochs")
    if run.row == "pixels":
        return tuple(f for f in _PROBE_SETTINGS if f != "probe_resize")
    if run.row in ("vit", "vit_ceiling"):
        return PRETRAIN_SETTINGS + ("task", "probe_batch", "probe_resize", "probe_tiles", "vit_ceiling_epochs", "vit_head_seeded",
                                    *(("ceiling_host",) if run.row == "vit_ceiling" else ()))
    return PRETRAIN_SETTINGS + _PROBE_SETTINGS


def run_record(run: Run, settings: Settings) -> dict:
    """What decides the numbers of ``run`` (its row, seed and every result-moving setting), as JSON data.

    Written beside the run's folder when it starts (``RUNS/<key>/seed<k>.settings.json``); a finished or
    started run is reused only when its record matches, so runs of two settings never meet in one table.
    """
    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name not in _NOT_RUN_SETTINGS}
    fields["task"] = dataclasses.asdict(settings.task)
    record = {"run": dataclasses.asdict(run), "curve": run.curve(settings), "settings": fields}
    return json.loads(json.dumps(record))  # tuples -> lists: the form read back from disk


def record_path(runs_root: Path, run: Run) -> Path:
    d = run_dir(runs_root, run)
    return d.with_name(f"{d.name}.settings.json")


def record_state(run: Run, settings: Settings, runs_root: Path) -> str:
    """What a run folder is to this table: ``"new"`` (nothing there), ``"same"`` (its record matches every setting
    that decides its result) or ``"reprobe"`` (the same pretraining, another probe: the pretraining is reused and
    the probe, or the training of a reference row, is run again). A folder whose pretraining differs, or with
    no readable record, raises ValueError (one line, exit 2): runs of two settings never share a table."""
    d, rec = run_dir(runs_root, run), record_path(runs_root, run)
    if not (d.exists() or rec.exists()):
        return "new"
    try:
        stored = json.loads(rec.read_text())
    except FileNotFoundError:
        raise ValueError(f"{d} holds a run with no settings record ({rec.name} is missing: made by an older kit "
                         f"or another tool), so it cannot be reused safely; give --runs a new folder, or remove "
                         f"{d}.") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{rec}: unreadable settings record ({exc}); give --runs a new folder, or remove {d} "
                         f"and {rec.name}.") from None
    want = run_record(run, settings)
    diff = _changed(stored, want["settings"], run)
    if any(stored.get(k) != want[k] for k in ("run", "curve")):
        diff = ["row, seed or curve"]
    elif not diff:
        return "same"
    has_export = run.row not in ("ceiling", "pixels")  # its encoder (pretrained, or at init) is reused as is
    if diff == ["row, seed or curve"] or (has_export and any(k in PRETRAIN_SETTINGS for k in diff)):
        what = ", ".join(diff)
        raise ValueError(f"{d} was made with other settings ({what} differ{'s' if len(diff) == 1 else ''}); "
                         f"runs of two settings never share a table: give --runs a new folder, or remove {d}.")
    return "reprobe"


def _changed(stored: dict, settings: dict, run: Run) -> list[str]:
    """The result-deciding settings of ``run`` whose value in a stored record differs from ``settings``.
    ``host_params`` is compared for the run's own host only: another host's bindings never reach its pretraining."""
    old = {**_LEGACY_SETTINGS, **(stored.get("settings") or {})}

    def value(rec: dict, k: str):
        if k == "host_params":
            return list(dict((h, list(b)) for h, b in rec.get(k) or ()).get(run.host, ()))
        return rec.get(k)
    return sorted(k for k in result_settings(run) if value(old, k) != value(settings, k))


def check_records(settings: Settings, runs: list[Run], runs_root: Path) -> list[Run]:
    """Refuse (ValueError: one line, exit 2) before any work when a run folder holds a pretraining of other
    settings; return the runs whose probe is to be run again (same pretraining, other probe settings)."""
    return [run for run in runs if record_state(run, settings, runs_root) == "reprobe"]


def _write_record(runs_root: Path, run: Run, settings: Settings, reprobe: bool = False) -> None:
    """Write the run's settings record when it starts. On a re-probe the record takes the new settings, keeps
    the commit and time its pretraining started at and adds ``reprobed`` (commit, time, the settings replaced)."""
    rec = record_path(runs_root, run)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if rec.is_file() and not reprobe:
        return
    new = {**run_record(run, settings), "commit": source_commit(), "created": now}
    if reprobe:
        old = json.loads(rec.read_text())
        before = {**_LEGACY_SETTINGS, **(old.get("settings") or {})}
        replaced = {k: before.get(k) for k in _changed(old, new["settings"], run)}
        new.update(commit=old.get("commit", "unknown"), created=old.get("created", "unknown"),
                   reprobed=[*old.get("reprobed", []), {"commit": source_commit(), "at": now, "replaced": replaced}])
    rec.parent.mkdir(parents=True, exist_ok=True)
    tmp = rec.with_name(rec.name + ".tmp")
    tmp.write_text(json.dumps(new, indent=2))
    os.replace(tmp, rec)


def _supersede(d: Path) -> float:
    """Before a re-probe: the old probe's outputs move to ``d/superseded-<UTC time>/`` (kept, never mixed in).

    Returns:
        the seconds the run had cost so far (its pretraining and earlier probes), for the report's compute."""
    old = d / f"superseded-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    try:
        prev = json.loads((d / "probe.json").read_text())
        spent = float(prev.get("seconds", 0.0)) + float(prev.get("seconds_before", 0.0))
    except (OSError, ValueError):
        spent = 0.0
    for name in ("DONE", "probe.json", "tile_confusion.npy"):
        if (d / name).exists():
            old.mkdir(parents=True, exist_ok=True)
            os.replace(d / name, old / name)
    return spent


def source_commit(short: bool = False) -> str:
    """The kit checkout's ``HEAD`` (``-dirty`` when tracked files differ from it), or ``unknown`` outside git."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", *(["--short"] if short else []), "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


def experiment_log(workdir: Path) -> Path:
    """Where the output of a run's ``tools/train.py`` goes: ``RUNS/<key>/seed<k>.log``, beside its folder."""
    return workdir.with_name(f"{workdir.name}.log")


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
    from crossscale_kit.eval.minitask import probe_encoder, raw_pixel_probe, supervised_ceiling, supervised_vit

    d = run_dir(runs_root, run)
    reprobe = record_state(run, settings, runs_root) == "reprobe"
    done = d / "DONE"
    if done.is_file() and not reprobe:
        return _load_result(d)
    before = _supersede(d) if reprobe else 0.0
    _write_record(runs_root, run, settings, reprobe=reprobe)
    t0 = time.perf_counter()
    probe = dict(epochs=settings.probe_epochs, batch_size=settings.probe_batch, heads=settings.probe_heads)
    curve = []
    if run.row == "ceiling":
        res = supervised_ceiling(settings.task, seed=run.seed, epochs=settings.ceiling_epochs)
    elif run.row == "pixels":
        res = raw_pixel_probe(settings.task, seed=run.seed, tiles_per_side=settings.probe_tiles, **probe)
    else:
        if not _pretrained(d, settings.steps if run.pretrains else 0):  # killed while probing: probe again
            _pretrain(run, d, settings, python)
        if run.row in ("vit", "vit_ceiling"):
            res = supervised_vit(d / "export", settings.task, seed=run.seed, epochs=settings.vit_ceiling_epochs,
                                 batch_size=settings.probe_batch, resize=settings.probe_resize,
                                 tiles_per_side=settings.probe_tiles)
        else:
            res = probe_encoder(d / "export", settings.task, seed=run.seed, resize=settings.probe_resize,
                                tiles_per_side=settings.probe_tiles, **probe)
            if run.curve(settings):
                curve = _probe_checkpoints(d, settings, run.seed, probe)
    res = {**dataclasses.asdict(run), "key": run.key, "seconds": round(time.perf_counter() - t0, 1), **res}
    if before:  # a re-probe: what the run had cost before (its pretraining, earlier probes)
        res["seconds_before"] = round(before, 1)
    if curve:
        res["curve"] = curve + [{"step": settings.steps, "test_miou": res["test_miou"], "val_miou": res["val_miou"]}]
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "tile_confusion.npy", res.pop("tile_confusion").astype(np.int32))
    (d / "probe.json").write_text(json.dumps(res, indent=2))
    for ck in (d / "checkpoints").glob("ckpt-*.pt"):  # the export and logs are what the report needs
        ck.unlink()
    done.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return _load_result(d)


def _probe_checkpoints(d: Path, settings: Settings, seed: int, probe: dict) -> list[dict]:
    """Probe the run's checkpoints at :attr:`Settings.curve_steps` (exported to ``d/curve/step<k>``)."""
    from crossscale_kit.encoders.export import export_from_checkpoint
    from crossscale_kit.eval.minitask import probe_encoder
    from crossscale_kit.train.checkpoint import load_checkpoint

    points = []
    for step in settings.curve_steps:
        out = d / "curve" / f"step{step}"
        if not (out / "meta.json").is_file():
            ck = d / "checkpoints" / f"ckpt-{step:08d}.pt"
            if not ck.is_file():
                raise RuntimeError(f"{ck} is missing: the learning curve needs the checkpoint of step {step}; "
                                   f"remove {d} and run the experiment again.")
            export_from_checkpoint(load_checkpoint(ck), out)
        r = probe_encoder(out, settings.task, seed=seed, resize=settings.probe_resize, tiles_per_side=settings.probe_tiles,
                          **probe)
        points.append({"step": step, "test_miou": r["test_miou"], "val_miou": r["val_miou"]})
    return points


def _load_result(d: Path) -> dict:
    res = json.loads((d / "probe.json").read_text())
    res["tile_confusion"] = np.load(d / "tile_confusion.npy")
    res["dir"] = str(d)
    try:  # provenance for the report: the commit the run started at
        res["commit"] = json.loads(d.with_name(f"{d.name}.settings.json").read_text()).get("commit") or "unknown"
    except (OSError, ValueError):
        res["commit"] = "unknown"
    return res


def run_all(settings: Settings, out: Path, runs_root: Path, hosts: list[str] | None = None,
            python: str = sys.executable, jobs: int = 1) -> list[dict]:
    """Run (or resume) every run of the plan, then write the report, CSVs and figures into ``out``."""
    from crossscale_kit.eval.minitask import assert_disjoint, load_split
    from crossscale_kit.experiments.mini_report import write_report

    import torch

    # one thread per run: on a shared CPU, more threads than free cores slow a small model many-fold
    # (measured on the loaded 2-core machine: 10 s per step with 2 threads, 0.4 s with 1)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    hosts = hosts if hosts is not None else available_hosts()
    if not hosts:
        raise ValueError("no host has a recipe gin/<host>_mr.gin; nothing to run.")
    runs = plan(settings, hosts)
    reprobe = check_records(settings, runs, runs_root)  # before any work: no pretraining of other settings joins
    if reprobe:
        print(f"{len(reprobe)} finished run(s) were probed with other probe settings: their pretraining is reused and "
              f"they are probed again (the old probe results move to <run>/superseded-<time>/)", flush=True)
    assert_disjoint(settings.task, settings.pretrain)
    for split in ("train", "val", "test"):
        load_split(settings.task, split)  # render once, before any timing
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


def describe_plan(settings: Settings, hosts: list[str], runs_root: Path) -> str:
    """The runs of the plan, one line each, with what is already done (``--dry_run``: runs nothing)."""
    lines = []
    runs = plan(settings, hosts)
    for i, run in enumerate(runs, 1):
        d = run_dir(runs_root, run)
        state = "done" if (d / "DONE").is_file() else ("started" if d.exists() else "to run")
        if state != "to run" or record_path(runs_root, run).exists():
            try:
                if record_state(run, settings, runs_root) == "reprobe":
                    state = ("to train again: same init, other training settings" if run.row in ("vit", "vit_ceiling", "ceiling")
                             else "to probe again: same pretraining, other probe settings")
            except ValueError:
                state = "REFUSED: other settings or no record"
        what = (f"{run.recipe} + {settings.preset}, {settings.steps if run.pretrains else 0} steps"
                if run.recipe else {"ceiling": "supervised CNN", "pixels": "linear probe on raw MR pixels"}[run.row])
        if run.extra_params:
            what += " + " + ", ".join(run.extra_params)
        if run.row in ("vit", "vit_ceiling"):
            what = f"supervised ViT ({run.host} encoder), {settings.vit_ceiling_epochs} epochs"
        extra = " + learning-curve probes at steps " + ",".join(map(str, settings.curve_steps)) if run.curve(settings) else ""
        lines.append(f"[{i:3d}/{len(runs)}] {run.key:<20} seed {run.seed}  {what}{extra}  ({state}: {d})")
    return "\n".join(lines)


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
    if getattr(args, "dry_run", False):
        print(describe_plan(settings, hosts, runs_root))
        return 0
    run_all(settings, out, runs_root, hosts=hosts, python=args.python, jobs=max(1, int(getattr(args, "jobs", 1) or 1)))
    print(f"report: {out / 'report.md'}")
    return 0
