"""The run identity of a fixed small run is pinned: a stored run resumes only while its hash stays the same.

The values were computed by this test's runs; a change of the package that changes them means
runs stored before it are no longer resumed. Where that is intended (a new setting, a changed
default), update the value here; where it is not, the change broke the identity. The data and the
weights are exact binary fractions, so the hashes do not depend on a CPU's rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from evaluation_toy import CLASS_NAMES, PAIRS, SIZE, ToyNet, toy_explainers, toy_metrics

import lafam_utils as lu

TOY_FACTORIES = "9f62f69972e170599d97dd0eb2641ffdb8ed8fdda0ff909aa720ab3aff15795d"
PACKAGE_LAFAM_AND_MODEL_METRICS = "c1f5741d50d1d20eb723c90504be82150b301fdf6b780077e4452c9386f25aa2"


class ExactDataset:
    """Four images and masks of exact binary fractions, listed by id."""

    name = "exact"

    def __len__(self) -> int:
        return 4

    def item_id(self, index: int) -> str:
        return f"exact{index}"

    def __getitem__(self, index: int) -> dict:
        image = (torch.arange(3 * SIZE * SIZE).reshape(3, SIZE, SIZE) % (5 + index)).float() / 8
        mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        mask[index : index + SIZE // 3, 4 : 4 + SIZE // 3] = True
        return {"image": image, "mask": mask, "labels": (CLASS_NAMES[index % 3],), "id": self.item_id(index)}


def exact_models() -> dict[str, torch.nn.Module]:
    """The toy classifier and encoder with weights set to exact binary fractions."""
    models = {"toynet": ToyNet(CLASS_NAMES), "toyenc": ToyNet(None)}
    with torch.no_grad():
        for offset, model in enumerate(models.values()):
            for parameter in model.parameters():
                values = torch.arange(parameter.numel()) % (7 + offset) - 3
                parameter.copy_(values.reshape(parameter.shape).float() / 16)
    return models


def stored_identity(results_dir: Path, **kwargs) -> tuple[str, Path]:
    table = lu.evaluate(ExactDataset(), results_dir=results_dir, models=exact_models(), batch_size=3, progress=False,
                        num_workers=0, **kwargs)
    run_dir = Path(table.attrs["run_dir"])
    return json.loads((run_dir / "run.json").read_text())["identity_sha256"], run_dir


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(pairs=PAIRS, explainers=toy_explainers(), explainer_kwargs={"gradlike": {"scale": 2.0}},
              metric_fn=toy_metrics, metrics=["AUC", "Pointing-Game"], k=50), TOY_FACTORIES),
        (dict(pairs=[("toynet", "lafam"), ("toyenc", "lafam")], metrics=["AUC", "MPRT", "Deletion"],
              metric_options={"MPRT": {"seed": 7}, "Deletion": {"steps": 4}}), PACKAGE_LAFAM_AND_MODEL_METRICS),
    ],
    ids=["toy-factories", "package-lafam-and-model-metrics"],
)
def test_the_identity_of_a_fixed_run_is_unchanged(tmp_path, kwargs, expected):
    identity_sha256, run_dir = stored_identity(tmp_path, **kwargs)
    assert identity_sha256 == expected
    assert run_dir.name == expected[:12]
