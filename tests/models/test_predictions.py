"""A classifier's predictions in batches."""

import torch
from torch import nn

from lafam_utils.models.predictions import predict


def test_predict_in_batches_equals_one_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    images = torch.randn(7, 3, 17, 19)
    expected = model(images).argmax(dim=1)
    assert torch.equal(predict(model, images, batch_size=3), expected)
    assert predict(model, images[:1]).shape == (1,)
