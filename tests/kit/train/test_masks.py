"""Masks planned in the loader workers: bit-identical to the forward's own draws, tagged with their step."""
from __future__ import annotations

import json

import pytest
import torch

from crossscale_kit.data.loader import PairedTiles
from crossscale_kit.data.transforms import PairedRandomResizedCrop
from crossscale_kit.encoders import ProjectionHead, ViTEncoder
from crossscale_kit.frameworks import IJEPA, MAE, LatentMIM, SpatialAffinity
from crossscale_kit.frameworks.context import PlannedMasks
from crossscale_kit.predictors import CrossAttentionDecoder, IJEPAPredictor, MAEDecoder
from crossscale_kit.samplers import BlockSampler, MultiBlock, RandomSplit
from crossscale_kit.train.masks import MaskPlanner, attach_plan
from crossscale_kit.train.seeds import mask_context
from tests.kit.data.fakes import synthetic_root
from tests.kit.train.helpers import losses, run


def _enc():
    return ViTEncoder(arch="vit_tiny", patch_size=8, img_size=64, embed_dim=32, depth=1, num_heads=2)


def _ijepa():
    return IJEPA(encoder=_enc(), predictor=IJEPAPredictor(32, width=32, depth=1, num_heads=2),
                 sampler=MultiBlock(min_keep=4))


def _latentmim():
    return LatentMIM(encoder=_enc(), head=ProjectionHead(32, 32),
                     decoder=CrossAttentionDecoder(32, width=32, depth=1, num_heads=2), sampler=RandomSplit(16))


def _mae():
    return MAE(encoder=_enc(), decoder=MAEDecoder(32, 8, 4, width=32, depth=1, num_heads=2), sampler=RandomSplit(16))


FRAMEWORKS = {
    "ijepa+sa": lambda: SpatialAffinity(host=_ijepa()),
    "latentmim+sa": lambda: SpatialAffinity(host=_latentmim()),
    "latentmim+sa(block sampler)": lambda: SpatialAffinity(host=_latentmim(), sampler=BlockSampler()),
    "mae": _mae,
}


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_planned_forward_equals_inline_forward(name):
    """Masks drawn ahead of time from the step's seed give the exact loss and patches of drawing them inline,
    for this rank's rows of a 2-rank global batch (the planner holds only the samplers, as a worker does)."""
    torch.manual_seed(0)
    fw = FRAMEWORKS[name]()
    g = torch.Generator().manual_seed(1)
    batch = {"mr": torch.randn(3, 4, 64, 64, generator=g), "hr": torch.randn(3, 4, 128, 128, generator=g)}
    planner = MaskPlanner.for_framework(fw, (8, 8), seed=5, rank=1, world_size=2, local_batch=3, accum_steps=2)
    for n in (0, 3, 6):
        step, micro = divmod(n, 2)
        plan = planner(n)
        assert (plan["step"], plan["micro"]) == (step, micro)
        planned_ctx = attach_plan(mask_context(5, step, micro, rank=1, local_batch=3, world_size=2), plan)
        inline_ctx = mask_context(5, step, micro, rank=1, local_batch=3, world_size=2)
        torch.manual_seed(n)
        a = fw(batch, planned_ctx)
        torch.manual_seed(n)
        b = fw(batch, inline_ctx)
        assert torch.equal(a.student_idx, b.student_idx)
        assert torch.equal(a.loss, b.loss)
        assert len(plan["masks"].masks) == len(fw.mask_samplers())


def test_plan_for_another_step_or_framework_is_refused():
    fw = SpatialAffinity(host=_ijepa())
    planner = MaskPlanner.for_framework(fw, (8, 8), seed=0, rank=0, world_size=1, local_batch=2)
    plan = planner(4)
    with pytest.raises(ValueError, match="planned masks for step 4 .* loop runs step 3"):
        attach_plan(mask_context(0, 3, 0, rank=0, local_batch=2, world_size=1), plan)
    ctx = attach_plan(mask_context(0, 4, 0, rank=0, local_batch=2, world_size=1), plan)
    with pytest.raises(ValueError, match="draw #0 \\(RandomSplit"):
        _latentmim()(
            {"mr": torch.randn(2, 4, 64, 64), "hr": torch.randn(2, 4, 128, 128)}, ctx)
    with pytest.raises(ValueError, match="without planned masks"):
        fw.draw_planned(fw.mask_samplers(), 2, (8, 8), ctx)
    empty = PlannedMasks((), (), (8, 8))
    with pytest.raises(ValueError, match="none left"):
        empty.take(MultiBlock(), 2, (8, 8))


@pytest.mark.parametrize("workers", [0, 1])
def test_stream_plans_each_batch_by_its_position_across_resumes(tmp_path, workers):
    """The worker that makes the rank's n-th batch (counted across resumes) plans micro-batch n."""
    root = synthetic_root(tmp_path, num_pairs=8, mr_size=32, shard_size=2)
    tiles = PairedTiles(str(root), batch_size=2, num_workers=workers, shuffle_buffer=4,
                        crop=PairedRandomResizedCrop(size=64))
    fw = SpatialAffinity(host=_ijepa())
    planner = MaskPlanner.for_framework(fw, (8, 8), seed=3, rank=0, world_size=1, local_batch=2, accum_steps=2)
    stream = tiles.stream(seed=3, planner=planner)
    it = iter(stream)
    for n in range(3):
        plan = next(it)["plan"]
        ref = planner(n)
        assert (plan["step"], plan["micro"]) == divmod(n, 2)
        for got, want in zip(plan["masks"].masks, ref["masks"].masks):
            assert all(torch.equal(got.tensors()[k], v) for k, v in want.tensors().items())
    state = json.loads(json.dumps(stream.state_dict()))
    stream.close()
    resumed = tiles.stream(seed=3, state=state, planner=planner)
    plan = next(iter(resumed))["plan"]
    resumed.close()
    assert (plan["step"], plan["micro"]) == (1, 1)  # the 4th micro-batch: step 1, micro-batch 1


def test_training_with_masks_planned_in_a_worker_process_matches_in_process(tmp_path):
    """I-JEPA + SA with accumulation: masks planned in a DataLoader worker process give the losses of the
    in-process run, step for step (the plan crosses the process boundary with its tag)."""
    common = ["train.accum_steps = 2", "train.batch_size = 4"]
    run("gin/ijepa_sa.gin", tmp_path / "w0", bindings=common + ["PairedTiles.num_workers = 0"], max_steps=4)
    run("gin/ijepa_sa.gin", tmp_path / "w1", bindings=common + ["PairedTiles.num_workers = 1"], max_steps=4)
    a, b = losses(tmp_path / "w0"), losses(tmp_path / "w1")
    assert len(a) == len(b) == 4
    assert [r["loss/total"] for r in a] == [r["loss/total"] for r in b]


def test_a_resume_that_restarts_the_data_stream_still_tags_its_steps(tmp_path):
    """A checkpoint of another world size restarts the data order (the stream counts from 0) while the
    steps go on: the planner's offset keeps the masks of step S tagged S, and the run continues."""
    from crossscale_kit.train.checkpoint import list_checkpoints, load_checkpoint

    work = tmp_path / "run"
    bindings = ["train.accum_steps = 2", "train.batch_size = 4", "train.ckpt_every = 2"]
    run("gin/ijepa_sa.gin", work, bindings=bindings, max_steps=2)
    step, path = list_checkpoints(work)[-1]
    state = load_checkpoint(path)
    state["data"] = state["data"] * 2  # as if two ranks had written it: this one-process resume restarts the data
    state["rng"] = state["rng"] * 2
    torch.save(state, path)
    run("gin/ijepa_sa.gin", work, bindings=bindings, max_steps=2, resume=True)
    assert [r["step"] for r in losses(work)][-1] == 4
    planner = MaskPlanner.for_framework(SpatialAffinity(host=_ijepa()), (8, 8), seed=0, rank=0, world_size=1,
                                        local_batch=2, accum_steps=2, offset=2 * 2)
    assert planner(0)["step"] == 2 and planner(3)["step"] == 3 and planner(3)["micro"] == 1
