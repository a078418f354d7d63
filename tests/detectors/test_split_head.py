"""The split head: spills found like the one-class detector, named by a gradient-stopped branch."""

from __future__ import annotations

import math

import pytest

from synspill.detectors import yolo

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def split_head():
    yolo._import_ultralytics()
    from synspill.detectors import split_head

    return split_head


def _models(split_head):
    """A split YOLO11n (8 classes) and ultralytics' one-class YOLO11n with the same shared weights."""
    from types import SimpleNamespace

    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    split = split_head.SplitModel("yolo11n.yaml", nc=8, verbose=False)
    one = DetectionModel("yolo11n.yaml", nc=1, verbose=False)
    missing, unexpected = one.load_state_dict(split.state_dict(), strict=False)
    assert not missing and all(".cv4." in k for k in unexpected)
    args = SimpleNamespace(**{k: v for k, v in vars(get_cfg()).items()})
    split.args = one.args = args
    return split, one


def _batch():
    # 2 images of 64 px; image 0 holds two boxes of classes 3 and 6, image 1 one box of class 1
    return {"batch_idx": torch.tensor([0.0, 0.0, 1.0]), "cls": torch.tensor([[3.0], [6.0], [1.0]]),
            "bboxes": torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.7, 0.6, 0.4, 0.3], [0.5, 0.5, 0.6, 0.5]]),
            "img": torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))}


def test_class_scores_by_hand(split_head):
    spill = torch.tensor([[[0.0]]])                                    # sigmoid: 0.5
    kinds = torch.tensor([[[math.log(2.0)], [0.0], [math.log(0.5)]]])  # probabilities 4/7, 2/7, 1/7
    assert torch.allclose(split_head.class_scores(spill, kinds)[0, :, 0], torch.tensor([0.5, 0.25, 0.125]))


def test_spill_loss_is_the_one_class_detectors(split_head):
    """Box, spill-score and DFL loss equal ultralytics' one-class loss on the same weights, and so
    do the gradients of the box and spill-score branches; the kinds' cross-entropy adds to
    ``cls_loss`` and trains the kind branch."""
    split, one = _models(split_head)
    split.train(), one.train()
    batch = _batch()
    loss, items = split.loss(batch)
    ref_batch = {**batch, "cls": torch.zeros_like(batch["cls"])}  # ultralytics' single_cls
    ref, ref_items = one.loss(ref_batch)
    assert set(items) == set(ref_items) == {"box_loss", "cls_loss", "dfl_loss"}
    for k in ("box_loss", "dfl_loss"):
        assert torch.allclose(items[k], ref_items[k], rtol=1e-5), k
    assert items["cls_loss"] > ref_items["cls_loss"] + 1e-3  # plus the kinds' cross-entropy
    loss.sum().backward()
    ref.sum().backward()
    theirs = dict(one.named_parameters())
    checked, kind_grad = 0, 0.0
    head = f"model.{len(split.model) - 1}."
    for name, p in split.named_parameters():
        if name.startswith(head + "cv4."):
            kind_grad += float(p.grad.abs().sum()) if p.grad is not None else 0.0
        elif name.startswith((head + "cv2.", head + "cv3.")):
            g, rg = p.grad, theirs[name].grad
            assert (g is None) == (rg is None), name
            if g is not None:
                assert torch.allclose(g, rg, rtol=1e-4, atol=1e-6), name
                checked += 1
    assert checked > 20 and kind_grad > 0  # the kind branch learns (at the levels boxes were assigned to)


def test_kind_loss_reaches_the_neck_but_not_the_spill_branches(split_head):
    split, _ = _models(split_head)
    split.train()
    preds = split(_batch()["img"])
    preds["kinds"].sum().backward()
    head = split.model[-1]
    assert all(p.grad is None for p in (*head.cv2.parameters(), *head.cv3.parameters()))
    assert all(p.grad is not None for p in head.cv4.parameters())
    assert split.model[16].cv1.conv.weight.grad is not None  # the shared neck learns from both


def test_inference_output_is_ultralytics_layout(split_head):
    """``(N, 4 + nc, A)``; each anchor's best class scores the spill score, its others the softmax ratio."""
    split, _ = _models(split_head)
    with torch.no_grad():  # untrained kind logits are ~1e-8 apart: spread them so the ranking is well defined
        for branch in split.model[-1].cv4:
            branch[-1].weight.normal_(0.0, 1.0), branch[-1].bias.normal_(0.0, 1.0)
    split.eval()
    with torch.no_grad():
        y, raw = split(_batch()["img"])
    assert y.shape == (2, 4 + 8, raw["scores"].shape[-1])
    cls = y[:, 4:]
    assert torch.allclose(cls.amax(1), raw["scores"].sigmoid()[:, 0], atol=1e-6)
    p = raw["kinds"].softmax(1)
    assert torch.allclose(cls / cls.amax(1, keepdim=True), p / p.amax(1, keepdim=True), atol=1e-5)
    assert torch.equal(cls.argmax(1), raw["kinds"].argmax(1))


def test_model_files_ask_for_the_split_head(split_head, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path))
    split_file, _ = yolo.resolve_model("lite0")
    shared_file, _ = yolo.resolve_model("lite0", split_head=False)
    assert split_file != shared_file
    assert split_head.wants_split(split_file) and not split_head.wants_split(shared_file)
    assert not split_head.wants_split("yolo11n.yaml") and not split_head.wants_split({"nc": 8})
