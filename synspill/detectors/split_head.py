"""A YOLO head that scores spills class-agnostically and names them in a separate branch.

Trained on synthetic data, a detector with one output per class transfers to real photos worse
than one trained with a single "any spill" class (docs/detectors.md, 5 seeds: real valid
mAP@50 0.142 against 0.243): each class output learns one rendered liquid, and a real spill
that looks like none of them in particular scores low in all. :class:`SplitDetect` scores
*any spill* in its own branch, trained like the one-class detector (class-agnostic
assignment, BCE on the alignment target), and names it in a second branch (*kinds*: eight
logits, cross-entropy on the anchors assigned to a box). Both read the shared neck; neither
branch's loss reaches the other's layers.

At inference a detection's score for class ``c`` is ``spill × p_c / max_k p_k`` (``p`` the
softmax of the kind logits): the most likely class scores the spill score itself, so the
alarm score and the class-agnostic ranking are the spill score, trained like the one-class
detector's; the other classes score below it. The output is ultralytics' usual
``(N, 4 + nc, anchors)``, so ``predict``, ``val``, NMS and ONNX export work unchanged.

ultralytics builds models from YAML with its own parser, which knows only its own heads, so
:class:`SplitModel` builds the usual model and swaps the head; :class:`SplitTrainer` builds a
:class:`SplitModel` for model files that ask for it (``split_head: true``, written by
:func:`synspill.detectors.lite.model_dict`). Checkpoints pickle these classes by import path
(``synspill.detectors.split_head``; keep it stable).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.nn.modules import Conv, Detect, DWConv
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.loss import v8DetectionLoss
from ultralytics.utils.tal import TaskAlignedAssigner
from ultralytics.utils.torch_utils import initialize_weights

from synspill.detectors import lite

lite.register()  # model files of this head hold the EfficientNet-Lite layer (also in DDP workers)


class SplitDetect(Detect):
    """Detect head: boxes and a class-agnostic spill score, plus a branch naming the class.

    Args:
        nc: Number of classes (the kind branch's outputs).
        reg_max: DFL bins of the box branch.
        end2end: Not supported (must be False).
        ch: Channels of the input feature maps.
    """

    legacy = False  # YOLO11-style depthwise branches, whatever the last parsed model set on Detect

    def __init__(self, nc: int = 8, reg_max: int = 16, end2end: bool = False, ch: list[int] | tuple[int, ...] = ()):
        if end2end:
            raise ValueError("SplitDetect has no end-to-end (one-to-one) branch")
        super().__init__(1, reg_max, False, ch)  # cv2: boxes, cv3: the spill score
        self.nc = nc
        self.no = nc + reg_max * 4
        c3 = max(ch[0], min(nc, 100))
        self.cv4 = nn.ModuleList(
            nn.Sequential(nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                          nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)), nn.Conv2d(c3, nc, 1))
            for x in ch
        )

    def forward_head(self, x: list[torch.Tensor], box_head: nn.Module | None = None,
                     cls_head: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Raw outputs: ``boxes`` (N, 4·reg_max, A), ``scores`` (spill logit, N, 1, A),
        ``kinds`` (class logits, N, nc, A) and the input ``feats``."""
        if box_head is None or cls_head is None:
            return {}
        bs = x[0].shape[0]
        box, spill, kind = cast(Any, box_head), cast(Any, cls_head), cast(Any, self.cv4)
        out: dict[str, Any] = {
            "boxes": torch.cat([box[i](x[i]).view(bs, 4 * self.reg_max, -1) for i in range(self.nl)], dim=-1),
            "scores": torch.cat([spill[i](x[i]).view(bs, 1, -1) for i in range(self.nl)], dim=-1),
            "kinds": torch.cat([kind[i](x[i]).view(bs, self.nc, -1) for i in range(self.nl)], dim=-1),
            "feats": x,
        }
        return out

    def _inference(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded boxes and per-class scores, ``(N, 4 + nc, A)``."""
        return torch.cat((self._get_decode_boxes(x), class_scores(x["scores"], x["kinds"])), 1)

    def bias_init(self) -> None:
        """ultralytics' prior for one class (about 0.01 objects per anchor); the kind branch starts uniform."""
        branches: Any = zip(self.cv2, self.cv3, self.cv4, self.stride, strict=True)
        for a, b, c, s in branches:
            a[-1].bias.data[:] = 2.0
            b[-1].bias.data[:] = math.log(5 / (640 / float(s)) ** 2)
            c[-1].bias.data[:] = 0.0


def class_scores(spill: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
    """Per-class scores from spill logits ``(N, 1, A)`` and kind logits ``(N, nc, A)``.

    The most likely kind scores ``sigmoid(spill)``; another kind scores that times its
    probability relative to the most likely one. (``sigmoid(spill) × p_c``, YOLOv5's
    objectness × class, ranked better within a class on the synthetic test split but found
    fewer real spills: docs/detectors.md, "The split head".)
    """
    p = kinds.softmax(1)
    return spill.sigmoid() * (p / p.amax(1, keepdim=True))


class SplitLoss(v8DetectionLoss):
    """The one-class detection loss on boxes and spill score, plus cross-entropy on the kinds.

    Anchors are assigned class-agnostically on the spill score (as ``single_cls`` training
    does); each assigned anchor's kind target is its box's class. The cross-entropy (times
    the ``cls`` gain) is added to ``cls_loss``.
    """

    def __init__(self, model: nn.Module, tal_topk: int = 10) -> None:
        super().__init__(model, tal_topk)
        self.nc = 1
        self.no = 1 + self.reg_max * 4
        self.class_weights = None  # per-class weights do not apply to one spill score
        self.assigner = TaskAlignedAssigner(topk=tal_topk, num_classes=1, alpha=0.5, beta=6.0,
                                            stride=cast(Any, self.stride).tolist())

    def loss(self, preds: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum of box, spill-score + kind and DFL losses times the batch size, and their detached items."""
        bs = preds["boxes"].shape[0]
        agnostic = {**batch, "cls": torch.zeros_like(batch["cls"])}
        (fg, gt_idx, *_), loss, _ = self.get_assigned_targets_and_loss(preds, agnostic)
        kinds = preds["kinds"].permute(0, 2, 1)  # (N, A, nc)
        if fg.any():
            targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]), 1)
            labels = self.preprocess(targets.to(self.device), bs, torch.ones(4, device=self.device))[..., 0]
            labels = labels.long().gather(1, gt_idx)  # (N, A): the class of each anchor's box
            ce = F.cross_entropy(kinds[fg].float(), labels[fg])
        else:
            ce = kinds.sum() * 0.0  # keeps the branch in the graph
        loss[1] = loss[1] + ce * cast(Any, self.hyp).cls
        return loss * bs, dict(zip(self.loss_names, loss.detach(), strict=True))


class SplitModel(DetectionModel):
    """ultralytics' DetectionModel with :class:`SplitDetect` as its head and :class:`SplitLoss`."""

    def __init__(self, cfg: str | dict[str, Any] = "yolo11n.yaml", ch: int = 3, nc: int | None = None,
                 verbose: bool = True) -> None:
        super().__init__(cfg, ch=ch, nc=nc, verbose=verbose)
        layers: Any = self.model
        old = layers[-1]
        head: Any = SplitDetect(old.nc, old.reg_max, ch=[m[0].conv.in_channels for m in old.cv2])
        head.i, head.f, head.type = old.i, old.f, f"{__name__}.SplitDetect"
        head.np = sum(p.numel() for p in head.parameters())
        head.stride, head.inplace = old.stride, old.inplace
        initialize_weights(head)
        head.bias_init()
        layers[-1] = head

    def init_criterion(self) -> SplitLoss:
        """The loss of the split head."""
        return SplitLoss(self)


def wants_split(cfg: Any) -> bool:
    """Whether a model definition (a dict, or the path of a YAML file) asks for the split head."""
    if isinstance(cfg, (str, Path)) and str(cfg).endswith((".yaml", ".yml")) and Path(cfg).is_file():
        import yaml

        cfg = yaml.safe_load(Path(cfg).read_text(encoding="utf-8"))
    return isinstance(cfg, dict) and bool(cfg.get("split_head"))


class SplitTrainer(DetectionTrainer):
    """ultralytics' detection trainer, building a :class:`SplitModel` for ``split_head`` model files."""

    def get_model(self, cfg: str | dict[str, Any] | None = None, weights: nn.Module | None = None,
                  verbose: bool = True) -> DetectionModel:
        """A :class:`SplitModel` when ``cfg`` asks for it and the data has several classes, else ultralytics' model."""
        if not wants_split(cfg) or self.data["nc"] < 2:
            return super().get_model(cfg, weights, verbose)
        from ultralytics.utils import RANK

        assert cfg is not None  # wants_split(None) is False
        model = self.set_model_names_for_load(
            SplitModel(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1))
        if weights:
            model.load(weights)
        return model
