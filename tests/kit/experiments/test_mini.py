"""``tools/experiments.py --table mini`` (:mod:`crossscale_kit.experiments.mini`): the task, the statistics and the
plumbing end to end at a tiny size.

The experiment itself (an hour) is not run here: ``--size tiny`` uses the test-suite's model preset, four
pretraining steps, a 16 px task with a handful of tiles and one host.
"""
import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))

import experiments  # noqa: E402
from crossscale_kit.experiments import mini as mini_experiment  # noqa: E402
from crossscale_kit.experiments import mini_report  # noqa: E402
from crossscale_kit.data.synthetic import GENERATOR_VERSION, SyntheticScenes  # noqa: E402
from crossscale_kit.eval.miou import mean_iou  # noqa: E402
from crossscale_kit.eval.minitask import CLASSES, MiniTask, assert_disjoint, load_split, mr_labels, tile_confusions  # noqa: E402

TASK = MiniTask(mr_size=16, num_train=4, num_val=2, num_test=3)


def test_scenes_are_deterministic_labelled_and_split_apart():
    a, b = TASK.scene("test", 1), TASK.scene("test", 1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["mr"].shape == (4, 16, 16) and a["hr"].shape == (4, 32, 32) and a["label"].shape == (16, 16)
    assert a["mr"].dtype == np.int16 and set(np.unique(a["label"])) <= set(range(len(CLASSES)))
    assert not np.array_equal(TASK.scene("train", 1)["hr"], a["hr"])  # splits draw different scenes
    # labelled parcels and tracks appear across a few scenes
    seen = set()
    for i in range(12):
        seen |= set(np.unique(TASK.scene("train", i)["label"]).tolist())
    assert seen == set(range(len(CLASSES)))


def test_task_streams_are_disjoint_from_the_pretraining_set():
    assert_disjoint(TASK, SyntheticScenes(num_pairs=64, mr_size=16))

    class Clashing(MiniTask):
        def seed_of(self, split, index):  # what a careless task would do: reuse the pretraining stream
            return [0, int(index), GENERATOR_VERSION]

    with pytest.raises(AssertionError, match="share a random stream"):
        assert_disjoint(Clashing(mr_size=16, num_train=4, num_val=2, num_test=3), SyntheticScenes(num_pairs=8))


def test_mr_labels_majority_with_tracks_counting_double():
    hr = np.zeros((4, 4), np.int8)
    hr[:2, :2] = 2                    # block (0, 0): all meadow
    hr[:2, 2:] = [[3, 3], [3, 0]]     # block (0, 1): 3 of 4 hamlet
    track = np.zeros((4, 4), np.float32)
    track[2, 0] = 1.0                 # block (1, 0): one track pixel of four (0.5 doubled) loses to 0.75 other
    track[2:, 2] = 1.0                # block (1, 1): two track pixels -> 1.0 > 0.5 other
    hr[track >= 0.5] = 4
    lab = mr_labels(hr, track, 2)
    assert lab.tolist() == [[2, 3], [0, 4]]


def test_split_cache_is_written_once_and_reused(tmp_path):
    d1 = load_split(TASK, "val", tmp_path)
    files = list(tmp_path.rglob("val.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    d2 = load_split(TASK, "val", tmp_path)
    assert files[0].stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(d1["mr"], d2["mr"])
    np.testing.assert_array_equal(d1["mr"][1], TASK.scene("val", 1)["mr"])


def test_probe_heads_pool_their_confusions_and_head_zero_is_the_single_probe():
    """``fit_heads``: head k seeded seed + 1000 k; the pooled confusion is the heads' sum; one head is the old probe."""
    from crossscale_kit.eval.minitask import HEAD_SEED_STRIDE, fit_heads

    g = torch.Generator().manual_seed(0)
    def split(n):  # 4 tiles per scene, 2 x 2 tokens of 6 dims, 4 x 4 labels that the features partly predict
        y = torch.randint(0, 3, (n, 4, 4), generator=g)
        x = torch.randn(n, 4, 6, generator=g) + y[:, ::2, ::2].reshape(n, 4, 1).float()
        return x, y
    data = {"train": split(32), "val": split(8), "test": split(8)}
    fit = dict(num_classes=3, group=4, epochs=3, lr=1e-2, batch_size=8)
    one = fit_heads(data, heads=1, seed=5, **fit)
    three = fit_heads(data, heads=3, seed=5, **fit)
    assert [h["seed"] for h in three["heads"]] == [5 + HEAD_SEED_STRIDE * k for k in range(3)]
    assert three["heads"][0] == one["heads"][0] and one["test_miou"] == one["heads"][0]["test_miou"]
    assert three["tile_confusion"].shape == (2, 3, 3) and int(three["tile_confusion"].sum()) == 3 * 2 * 4 * 16
    assert three["test_miou"] == mean_iou(three["tile_confusion"].sum(0))
    assert three["val_miou"] == pytest.approx(np.mean([h["val_miou"] for h in three["heads"]]))
    for bad in (0, 1.5, -2):
        with pytest.raises(ValueError, match="heads must be a positive integer"):
            fit_heads(data, heads=bad, seed=0, **fit)


def test_tile_confusions_and_miou_agree_with_the_kit_metric():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randint(0, 5, (6, 8, 8), generator=g), torch.randint(0, 5, (6, 8, 8), generator=g)
    conf = tile_confusions(pred, target, 5)
    assert conf.shape == (6, 5, 5) and conf.sum() == 6 * 64
    assert conf[2].sum() == 64 and conf[2, int(target[2, 0, 0]), int(pred[2, 0, 0])] >= 1
    assert mini_report.miou(conf.sum(0)) == pytest.approx(mean_iou(conf.sum(0)))


def test_bootstrap_interval_of_a_paired_difference():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (2, 40, 100))
    good = np.where(rng.random(truth.shape) < 0.9, truth, rng.integers(0, 3, truth.shape))
    bad = np.where(rng.random(truth.shape) < 0.5, truth, rng.integers(0, 3, truth.shape))
    conf = lambda p: np.stack([tile_confusions(torch.from_numpy(p[s]), torch.from_numpy(truth[s]), 3)  # noqa: E731
                               for s in range(2)])
    d, lo, hi = mini_report.bootstrap_diff(conf(good), conf(bad), iters=200)
    assert lo <= d <= hi and lo > 0.2
    d, lo, hi = mini_report.bootstrap_diff(conf(good), conf(good), iters=50)
    assert d == lo == hi == 0.0
    with pytest.raises(ValueError, match="different shapes"):
        mini_report.bootstrap_diff(conf(good), conf(good)[:1], iters=5)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_mini_table_end_to_end_and_resumes(tmp_path, capsys, monkeypatch):
    out, runs = tmp_path / "out", tmp_path / "runs"
    # with the control row for LatentMIM, which ships no recipe for it (its SA recipe + the frozen-teacher binding)
    settings = dataclasses.replace(mini_experiment.SIZES["tiny"], controls=("latentmim",))
    monkeypatch.setitem(mini_experiment.SIZES, "tiny", settings)
    # a partial run left behind by a kill: one of two steps done, a checkpoint, no DONE marker
    part = mini_experiment.run_dir(runs, mini_experiment.Run("latentmim", "mr", 0))
    mini_experiment._write_record(runs, mini_experiment.Run("latentmim", "mr", 0), settings)  # as execute() does first
    cmd = [sys.executable, str(REPO / "tools" / "train.py"), "--gin", "gin/latentmim_mr.gin", "--gin", settings.preset,
           "--workdir", str(part), "--max_steps", "1"]
    for p in settings.gin_params(0, curve=True, host="latentmim"):
        cmd += ["--gin_param", p]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)

    argv = ["--table", "mini", "--size", "tiny", "--hosts", "latentmim", "--out", str(out), "--runs", str(runs)]
    assert experiments.main(argv) == 0
    text = capsys.readouterr().out
    assert "resumed from" in mini_experiment.experiment_log(part).read_text()
    report = (out / "report.md").read_text()
    for needle in ("Table I (miniature)", "Table II (miniature)", "SA − MR", "real HR − false HR", "LatentMIM",
                   "random init (host floor)", "supervised CNN on MR", "fair ceiling", "raw MR pixels", "gap closed",
                   "Pre-registered checks", "n = 1", "scenes only", "bars.png", "learning_curve.png", "collapse.png",
                   "cluster_maps.png", "SA w/ frozen random teacher (control)", "SA − frozen teacher",
                   "frozen teacher − MR"):
        assert needle in report, needle
    assert "± 0.00" not in report  # one seed: no spread over seeds is shown
    assert "n = 1: not assessed" in report and "none detected" not in report  # and no verdict on power or effect
    results = _rows(out / "results.csv")
    assert sorted(r["key"] for r in results) == ["ceiling", "latentmim_falsehr", "latentmim_frozen", "latentmim_hr",
                                                 "latentmim_init", "latentmim_mr", "latentmim_sa", "pixels", "vit_ceiling"]
    assert all(0.0 <= float(r["test_miou"]) <= 100.0 for r in results)
    diffs = _rows(out / "differences.csv")
    assert [d["comparison"] for d in diffs] == ["SA - MR", "real HR - false HR", "SA - frozen teacher", "frozen teacher - MR"]
    frozen_cfg = (runs / "latentmim_frozen" / "seed0" / "config.gin").read_text()
    assert "SpatialAffinity.frozen_teacher = True" in frozen_cfg and "SpatialAffinity.host = @LatentMIM()" in frozen_cfg
    assert all(float(d["low"]) <= float(d["diff"]) <= float(d["high"]) for d in diffs)
    for fig in ("bars.png", "learning_curve.png", "collapse.png", "cluster_maps.png", "loss_curves.png"):
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the learning curve: MR and SA of seed 0 probed at each quarter of their pretraining, then at the end
    curves = _rows(out / "curves.csv")
    assert sorted((c["row"], int(c["step"])) for c in curves) == [(r, s) for r in ("mr", "sa") for s in (1, 2, 3, 4)]
    # the collapse monitors were logged by the pretraining runs themselves
    logged = [json.loads(x) for x in (runs / "latentmim_sa" / "seed0" / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert {"collapse/rankme_student", "collapse/rankme_target", "collapse/rankme_teacher",
            "collapse/std_student"} <= set(logged[-1])
    z = np.load(out / "tile_confusions.npz")
    assert z["latentmim_sa_seed0"].shape == (settings.task.num_test, len(CLASSES), len(CLASSES))
    assert not list(runs.rglob("ckpt-*.pt"))  # finished runs keep their export, not their checkpoints
    assert "[9/9]" in text

    # a second call redoes only the run whose DONE marker is gone
    done = {p: p.stat().st_mtime_ns for p in runs.rglob("DONE")}
    redo = mini_experiment.run_dir(runs, mini_experiment.Run("latentmim", "sa", 0))
    (redo / "DONE").unlink()
    before = json.loads((redo / "probe.json").read_text())["test_miou"]
    assert experiments.main(argv) == 0
    changed = [p for p in runs.rglob("DONE") if done.get(p) != p.stat().st_mtime_ns]
    assert changed == [redo / "DONE"]
    assert json.loads((redo / "probe.json").read_text())["test_miou"] == pytest.approx(before)

    # provenance: the report names the commit each run started at
    assert "runs started at " in (out / "report.md").read_text() and "unknown (" not in (out / "report.md").read_text()
    head = mini_experiment.source_commit()
    assert {r["commit"] for r in _rows(out / "results.csv")} == {head} and head != "unknown"

    # pretrainings of other settings never join the table: refused before any work, one line, exit 2
    capsys.readouterr()
    other = dataclasses.replace(settings, steps=settings.steps + 1)
    monkeypatch.setitem(mini_experiment.SIZES, "tiny", other)
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    assert experiments.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "steps differs" in err and "--runs" in err and "Traceback" not in err
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()} == stamps  # nothing touched

    # other probe settings (here one head instead of two): the pretrainings are reused, every probe runs again
    two = {r["key"]: json.loads((runs / r["key"] / "seed0" / "probe.json").read_text()) for r in results}
    assert all(len(two[k]["heads"]) == 2 for k in two if k not in ("ceiling", "vit_ceiling"))
    monkeypatch.setitem(mini_experiment.SIZES, "tiny", dataclasses.replace(settings, probe_heads=1))
    assert experiments.main(argv + ["--dry_run"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("(to probe again") == 7 and listing.count("(done:") == 2  # the CNN and the ViT ceiling
    assert experiments.main(argv) == 0
    assert "7 finished run(s) were probed with other probe settings" in capsys.readouterr().out
    assert "of it probing finished runs again" in (out / "report.md").read_text()
    assert all(float(r["seconds_before"]) > 0 for r in _rows(out / "results.csv") if r["key"].startswith("latentmim_"))
    after = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    for key in ("latentmim_mr", "latentmim_sa", "latentmim_init"):
        d = runs / key / "seed0"
        assert after[d / "export" / "encoder.safetensors"] == stamps[d / "export" / "encoder.safetensors"]
        one = json.loads((d / "probe.json").read_text())
        # head 0 of the pooled probe is exactly the single-head probe
        assert len(one["heads"]) == 1 and one["test_miou"] == two[key]["heads"][0]["test_miou"]
        assert [json.loads(p.read_text())["heads"] for p in d.glob("superseded-*/probe.json")] == [two[key]["heads"]]
        rec = json.loads(mini_experiment.record_path(runs, mini_experiment.Run("latentmim", key.split("_")[1], 0)).read_text())
        assert rec["settings"]["probe_heads"] == 1 and rec["reprobed"][-1]["replaced"] == {"probe_heads": 2}
    for key in ("ceiling", "vit_ceiling"):  # their results do not depend on the probe heads: left as they were
        assert after[runs / key / "seed0" / "DONE"] == stamps[runs / key / "seed0" / "DONE"]
    monkeypatch.setitem(mini_experiment.SIZES, "tiny", settings)
    assert experiments.main(argv) == 0  # and back: probed again with two heads, the same numbers as at first
    capsys.readouterr()
    again = json.loads((runs / "latentmim_sa" / "seed0" / "probe.json").read_text())
    assert again["heads"] == two["latentmim_sa"]["heads"] and again["test_miou"] == two["latentmim_sa"]["test_miou"]
    # more seeds of the same settings reuse the finished runs (the record leaves the seed list out)
    monkeypatch.setitem(mini_experiment.SIZES, "tiny", dataclasses.replace(settings, seeds=(0, 1)))
    assert experiments.main(argv + ["--dry_run"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("(done:") == 9 and listing.count("(to run:") == 9 and "REFUSED" not in listing
    # a run folder with no record (an older kit, another tool) is not reused either
    mini_experiment.record_path(runs, mini_experiment.Run("latentmim", "hr", 0)).unlink()
    assert experiments.main(argv) == 2
    assert "no settings record" in capsys.readouterr().err


def test_dry_run_lists_the_runs_and_runs_nothing(tmp_path, capsys):
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--table", "mini", "--size", "tiny", "--hosts", "latentmim,mae", "--out", str(out), "--runs", str(runs),
            "--dry_run"]
    assert experiments.main(argv) == 0
    text = capsys.readouterr().out
    lines = [x for x in text.splitlines() if x.startswith("[")]
    assert len(lines) == 2 * 5 + 3 and "[ 13/13]" in text
    assert "learning-curve probes at steps 1,2,3" in text and "supervised ViT (mae encoder)" in text
    assert not out.exists() and not runs.exists()


def test_mini_table_rejects_bad_arguments(capsys):
    assert experiments.main(["--table", "mini", "--table", "I"]) == 2
    assert experiments.main(["--table", "mini", "--size", "tiny", "--hosts", "nohost", "--out", "/tmp/never"]) == 2  # a user error (issue 23: exit 2)
    assert "nohost" in capsys.readouterr().err


def test_learning_curve_steps_are_checkpoint_steps_for_any_budget():
    for steps in (4, 7, 750, 1500, 1501):
        st = mini_experiment.Settings(steps=steps)
        every = int(next(p for p in st.gin_params(0) if p.startswith("train.ckpt_every")).split("=")[1])
        assert st.curve_steps and all(s % every == 0 and 0 < s < steps for s in st.curve_steps), steps
    assert mini_experiment.Settings(steps=1500).curve_steps == (375, 750, 1125)  # the committed table's
    assert mini_experiment.SIZES["fast"].curve_steps == (374,)  # --fast: its midpoint checkpoint only (2 x 750 // 4)


def test_a_run_folder_of_other_settings_is_refused_on_the_command_line(tmp_path):
    """Driven as a user would: a runs folder left by a table of other settings (here: more pretraining steps) and
    one with no record at all; the command refuses in one line before it renders, trains or writes anything."""
    from tests.redteam.helpers import assert_user_error, cli

    settings = mini_experiment.SIZES["tiny"]
    run = mini_experiment.Run("latentmim", "mr", 0)
    runs, out = tmp_path / "runs", tmp_path / "out"
    other = dataclasses.replace(settings, steps=settings.steps + 5)
    mini_experiment.run_dir(runs, run).mkdir(parents=True)
    mini_experiment._write_record(runs, run, other)
    args = ["--table", "mini", "--size", "tiny", "--hosts", "latentmim", "--runs", str(runs), "--out", str(out)]
    p = cli("experiments", *args)
    assert_user_error(p, str(mini_experiment.run_dir(runs, run)), "steps differs", "--runs")
    assert not out.exists() and sorted(x.name for x in (runs / "latentmim_mr").iterdir()) == ["seed0", "seed0.settings.json"]

    mini_experiment.record_path(runs, run).unlink()
    p = cli("experiments", *args)
    assert_user_error(p, "no settings record", "seed0.settings.json")
    assert not out.exists()


def test_a_host_with_its_own_encoder_gets_its_own_fair_ceiling(tmp_path):
    """I-JEPA's pretrainings bind a wider encoder than the shared ceiling's: the table adds a supervised ViT of
    exactly I-JEPA's encoder (row ``vit``), trained, and reads that host's gap closed against it."""
    from safetensors.torch import load_file

    settings = mini_experiment.SIZES["tiny"]
    assert "EMBED_DIM = 128" in settings.gin_params(0, host="ijepa")
    assert "EMBED_DIM = 128" not in settings.gin_params(0, host="latentmim")
    runs = mini_experiment.plan(settings, ["latentmim", "ijepa"])
    own = mini_experiment.Run("ijepa", "vit", 0)
    assert own in runs and sum(r.row == "vit_ceiling" for r in runs) == 1 and mini_experiment.Run("latentmim", "vit", 0) not in runs
    assert own.key == "ijepa_vit" and own.recipe == "gin/ijepa_mr.gin" and not own.pretrains

    res = mini_experiment.execute(own, tmp_path, settings)
    assert 0.0 <= res["test_miou"] <= 1.0 and "heads" not in res  # trained end to end, not probed
    d = mini_experiment.run_dir(tmp_path, own)
    weights = load_file(str(d / "export" / "encoder.safetensors"))
    assert {w.shape[-1] for k, w in weights.items() if k.endswith("norm.weight")} == {128}  # I-JEPA's own width
    assert json.loads((d / "summary.json").read_text())["steps"] == 0

    stats = {"ijepa_init": {"mean": 20.0}, "ijepa_mr": {"mean": 30.0}, "vit_ceiling": {"mean": 70.0},
             "ijepa_vit": {"mean": 60.0}, "latentmim_init": {"mean": 20.0}, "latentmim_mr": {"mean": 30.0}}
    assert mini_report.gap_closed(stats, "ijepa", "mr") == pytest.approx(0.25)  # (30 - 20) / (60 - 20)
    assert mini_report.gap_closed(stats, "latentmim", "mr") == pytest.approx(0.2)  # the shared ceiling


def test_control_rows_run_for_the_hosts_that_ask_for_them():
    """The sixth plan's control (SA with a frozen random HR teacher) joins the committed table for I-JEPA only,
    from its own recipe; a host without that recipe runs its SA recipe plus the binding; --fast has none."""
    full = mini_experiment.SIZES["full"]
    assert full.controls == ("ijepa",)
    runs = mini_experiment.plan(full, ["latentmim", "ijepa", "mae"])
    frozen = [r for r in runs if r.row == "frozen"]
    assert [(r.host, r.seed) for r in frozen] == [("ijepa", s) for s in full.seeds]
    assert len(runs) == 133 + len(full.seeds)  # the fifth plan's 133 runs are all still there
    run = frozen[0]
    assert run.key == "ijepa_frozen" and run.pretrains and not run.curve(full) and run.extra_params == []
    assert run.recipe == "gin/ablations/ijepa_sa_frozenteacher.gin"
    assert "SpatialAffinity.frozen_teacher = True" in (REPO / run.recipe).read_text()
    other = mini_experiment.Run("mae", "frozen", 0)
    assert other.recipe == "gin/mae_sa.gin" and other.extra_params == ["SpatialAffinity.frozen_teacher = True"]
    assert not [r for r in mini_experiment.plan(mini_experiment.SIZES["fast"], ["latentmim", "ijepa", "mae"])
                if r.row == "frozen"]


def test_seeded_heads_and_ceilings_do_not_depend_on_the_shared_generator(tmp_path):
    """Fits run in parallel threads of one process: each head (probe, CNN, supervised ViT) is drawn from its own
    seed, the same numbers as building it after ``torch.manual_seed``, whatever the shared generator holds. The
    supervised ViT's head used to be built before any seed; runs recorded so are trained again."""
    import torch

    from crossscale_kit.eval.minitask import SmallFCN, _LinearHead, seeded_init, supervised_vit

    for make in (lambda: _LinearHead(32, 5), lambda: SmallFCN(num_classes=5)):
        torch.manual_seed(11)
        want = make().state_dict()
        torch.manual_seed(12345)
        torch.rand(7)
        got = seeded_init(make(), 11).state_dict()
        assert all(torch.equal(want[k], got[k]) for k in want)
    with pytest.raises(ValueError, match="Embedding"):  # a layer whose default init it does not draw
        seeded_init(torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.Linear(3, 2)), 0)
    settings = mini_experiment.SIZES["tiny"]
    init = mini_experiment.Run("latentmim", "init", 0)
    mini_experiment.execute(init, tmp_path, settings)
    export = mini_experiment.run_dir(tmp_path, init) / "export"
    fits = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # another state of the shared generator before each fit
        fits.append(supervised_vit(export, settings.task, seed=3, epochs=1, batch_size=16))
    assert np.array_equal(fits[0]["tile_confusion"], fits[1]["tile_confusion"])

    vit = mini_experiment.Run("ijepa", "vit", 0)
    mini_experiment.run_dir(tmp_path, vit).mkdir(parents=True)
    mini_experiment._write_record(tmp_path, vit, settings)
    assert mini_experiment.record_state(vit, settings, tmp_path) == "same"
    rec = mini_experiment.record_path(tmp_path, vit)
    old = json.loads(rec.read_text())
    del old["settings"]["vit_head_seeded"]  # a record written before the fix
    rec.write_text(json.dumps(old))
    assert mini_experiment.record_state(vit, settings, tmp_path) == "reprobe"


def test_a_runs_record_compares_only_its_own_hosts_bindings(tmp_path):
    """Another host's per-host bindings never reach a run's pretraining, so changing them reuses the run; changing
    its own host's refuses it (one line, naming the setting)."""
    settings = mini_experiment.SIZES["tiny"]
    run = mini_experiment.Run("latentmim", "mr", 0)
    mini_experiment.run_dir(tmp_path, run).mkdir(parents=True)
    mini_experiment._write_record(tmp_path, run, settings)
    params = dict(settings.host_params)
    others = dataclasses.replace(settings, host_params=tuple({**params, "ijepa": ("EMBED_DIM = 96",)}.items()))
    assert mini_experiment.record_state(run, others, tmp_path) == "same"
    mine = dataclasses.replace(settings, host_params=tuple({**params, "latentmim": ("lr/WarmupCosine.peak = 1e-3",)}.items()))
    with pytest.raises(ValueError, match="host_params differs"):
        mini_experiment.record_state(run, mine, tmp_path)
