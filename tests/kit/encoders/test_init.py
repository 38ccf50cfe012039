"""The shared xavier initialisation of the encoder, head and decoders."""
import math

import torch
from torch import nn

from crossscale_kit.encoders.init import xavier_init_


def test_linears_xavier_zero_bias_and_layernorms_reset():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 512), nn.LayerNorm(512), nn.Linear(512, 64, bias=False), nn.Conv2d(3, 3, 1))
    with torch.no_grad():
        net[1].weight.fill_(3.0)
        net[1].bias.fill_(-1.0)
        conv_before = net[3].weight.clone()
    assert xavier_init_(net) is net
    bound = math.sqrt(6.0 / (256 + 512))  # xavier-uniform bound of the first Linear
    w = net[0].weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.05 * bound  # the std of U(-a, a) is a / sqrt(3)
    assert torch.count_nonzero(net[0].bias) == 0
    assert torch.equal(net[1].weight, torch.ones(512)) and torch.count_nonzero(net[1].bias) == 0
    assert net[2].weight.abs().max() <= math.sqrt(6.0 / (512 + 64))
    assert torch.equal(net[3].weight, conv_before)  # not a Linear or LayerNorm: untouched
