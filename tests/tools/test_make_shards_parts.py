"""make_shards --part i/N and make_shards merge: N writers side by side give exactly the samples of one run."""
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from tests.data.fixtures import REPO, load_tool

make_shards = load_tool("make_shards")
SYNTH = ["synthetic", "--num-pairs", "11", "--mr-size", "8", "--shard-size", "2", "--no-progress"]


def samples(root):
    """Every member of the set in index order: [(member name, bytes)] -- keys, arrays and metadata."""
    index = json.loads((root / "index.json").read_text())
    out = []
    for shard in index["shards"]:
        with tarfile.open(root / shard["name"]) as tar:
            out += [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    assert len({name.split(".")[0] for name, _ in out}) == index["num_samples"]
    return out


def cli(*args):
    return subprocess.run([sys.executable, "tools/make_shards.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})


def tool(*args):
    """make_shards in this process (as the CLI, without the start-up cost); return its exit code."""
    try:
        return make_shards.main([str(a) for a in args])
    except SystemExit as e:
        return e.code


def one_line_error(r, *needles):
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error" in lines[0], r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


class Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def fails(capsys, *args):
    """make_shards in this process, its exit code and stderr (as ``cli`` gives them, without the start-up cost)."""
    capsys.readouterr()
    code = tool(*args)
    return Result(code, capsys.readouterr().err)


def test_three_parts_written_in_parallel_merge_to_the_samples_of_one_run(tmp_path):
    single, split = tmp_path / "single", tmp_path / "split"
    assert tool(*SYNTH, "--out", single) == 0
    procs = [subprocess.Popen([sys.executable, "tools/make_shards.py", *SYNTH, "--out", str(split), "--part", f"{i}/3"],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}) for i in (1, 2, 3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0], [p.stderr.read() for p in procs]
    assert sorted(p.name for p in split.iterdir()) == [f"part-000{i}-of-0003" for i in (1, 2, 3)]
    assert tool("merge", "--out", split) == 0
    assert samples(split) == samples(single)  # same keys, same array bytes, same order
    index = json.loads((split / "index.json").read_text())
    assert index["num_samples"] == 11 and index["parts"]["samples"] == [3, 4, 4]
    assert sorted(p.name for p in split.iterdir()) == ["index.json"] + [s["name"] for s in index["shards"]]
    # the merged set is a shard set like any other: the loader takes it
    from crossscale_kit.data.loader import list_shards

    assert [s["name"] for s in list_shards(split)] == [s["name"] for s in index["shards"]]


@pytest.mark.parametrize("source", ["geotiff", "sen2venus-v1", "sen2venus-v2"])
def test_every_source_splits_into_disjoint_parts(source, tmp_path, geotiff_pair, sen2venus_fake):
    if source == "geotiff":
        args = ["geotiff", "--mr", geotiff_pair["mr"], "--hr", geotiff_pair["hr"], "--tile", "8", "--max-nodata", "0.5",
                "--shard-size", "3"]
    else:
        args = ["sen2venus", sen2venus_fake[source.split("-")[1]], "--shard-size", "2", "--max-nodata", "0.5"]
    single, split = tmp_path / "single", tmp_path / "split"
    assert tool(*args, "--out", single) == 0
    for i in (2, 1, 3):  # any order, any machine
        assert tool(*args, "--out", split, "--part", f"{i}/3") == 0
    assert tool("merge", "--out", split) == 0
    assert samples(split) == samples(single)
    a, b = (json.loads((d / "index.json").read_text()) for d in (single, split))
    assert a["skipped"] == b["skipped"] and a["num_samples"] == b["num_samples"]
    if "band_stats" in a:  # statistics of the union, from the parts' own
        for band, st in a["band_stats"].items():
            for k in ("mean", "std", "min", "max", "count"):
                assert b["band_stats"][band][k] == pytest.approx(st[k], rel=1e-9), (band, k)


def test_bad_part_values_are_one_line_errors(tmp_path, capsys):
    one_line_error(cli(*SYNTH, "--out", tmp_path / "o", "--part", "x"), "--part 'x'", "i/N")  # the real CLI
    for bad, needle in (("0/3", "1..N"), ("4/3", "1..N"), ("1/0", "1..N"), ("1.5/3", "i/N"), ("1/3/5", "i/N")):
        one_line_error(fails(capsys, *SYNTH, "--out", tmp_path / "o", "--part", bad), "--part", bad, needle)
    one_line_error(fails(capsys, *SYNTH, "--out", tmp_path / "o", "--part", "12/12"), "11 pairs", "12 parts")
    assert not (tmp_path / "o").exists()


def test_merge_refuses_missing_disagreeing_and_overlapping_parts(tmp_path, capsys):
    out = tmp_path / "set"
    one_line_error(fails(capsys, "merge", "--out", out), "does not exist")
    for i in (1, 3):
        assert tool(*SYNTH, "--out", out, "--part", f"{i}/3") == 0
    # a missing part: named, with the command that writes it
    one_line_error(cli("merge", "--out", out), "part 2/3", "missing", "--part 2/3")
    # a part of another recipe (here another seed)
    assert tool(*SYNTH, "--seed", "1", "--out", out, "--part", "2/3") == 0
    one_line_error(fails(capsys, "merge", "--out", out), "part 2/3 disagrees with part 1/3", "seed")
    assert tool(*SYNTH, "--out", out, "--part", "2/3", "--replace") == 0
    # a part that claims another scale (or bands, normalisation) than the others
    p2 = out / "part-0002-of-0003" / "index.json"
    good = p2.read_text()
    p2.write_text(json.dumps({**json.loads(good), "scale": 4}))
    one_line_error(fails(capsys, "merge", "--out", out), "part 2/3", "on scale")
    p2.write_text(good)
    # overlapping parts: part 3's samples also in part 2
    keep = tmp_path / "p2"
    shutil.copytree(out / "part-0002-of-0003", keep)
    shutil.rmtree(out / "part-0002-of-0003")
    shutil.copytree(out / "part-0003-of-0003", out / "part-0002-of-0003")
    p2.write_text(json.dumps({**json.loads(p2.read_text()), "part": json.loads(good)["part"]}))
    one_line_error(fails(capsys, "merge", "--out", out), "part 2/3 and part 3/3 both hold sample")
    shutil.rmtree(out / "part-0002-of-0003")
    shutil.copytree(keep, out / "part-0002-of-0003")
    assert not (out / "index.json").exists(), "nothing is published while a check fails"
    assert tool("merge", "--out", out) == 0
    # a published set is not replaced by accident
    for i in (1, 2, 3):
        assert tool(*SYNTH, "--out", out, "--part", f"{i}/3") == 0
    one_line_error(fails(capsys, "merge", "--out", out), "already holds a published shard set", "--replace")
    assert tool("merge", "--out", out, "--replace") == 0
    assert json.loads((out / "index.json").read_text())["num_samples"] == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p2", "set"], "no staging or old folder is left"


def test_parts_that_hold_only_nodata_are_empty_not_errors(tmp_path, geotiff_pair, capsys):
    """One tile per part: the 4 tiles under the HR no-data hole make empty parts; the merge still equals one run."""
    args = ["geotiff", "--mr", geotiff_pair["mr"], "--hr", geotiff_pair["hr"], "--tile", "8", "--max-nodata", "0"]
    single, split = tmp_path / "single", tmp_path / "split"
    assert tool(*args, "--out", single) == 0
    for i in range(1, 17):
        assert tool(*args, "--out", split, "--part", f"{i}/16") == 0
    assert tool("merge", "--out", split) == 0
    index = json.loads((split / "index.json").read_text())
    assert index["parts"]["samples"].count(0) == 4 and index["skipped"] == {"nodata": 4}
    assert samples(split) == samples(single)
