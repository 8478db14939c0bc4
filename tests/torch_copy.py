"""Copy weights from PyTorch's own modules into course_lib's, so both compute the same function."""

import torch
from torch import nn

from course_lib.decoder import DecoderLayer
from course_lib.encoder import EncoderLayer
from course_lib.multihead import MultiHeadAttention
from course_lib.normalization import LayerNorm


@torch.no_grad()
def copy_mha(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    w_q, w_k, w_v = theirs.in_proj_weight.chunk(3, dim=0)
    b_q, b_k, b_v = theirs.in_proj_bias.chunk(3, dim=0)
    ours.w_q.weight.copy_(w_q)
    ours.w_k.weight.copy_(w_k)
    ours.w_v.weight.copy_(w_v)
    ours.w_q.bias.copy_(b_q)
    ours.w_k.bias.copy_(b_k)
    ours.w_v.bias.copy_(b_v)
    ours.w_o.weight.copy_(theirs.out_proj.weight)
    ours.w_o.bias.copy_(theirs.out_proj.bias)


@torch.no_grad()
def copy_norm(ours: LayerNorm, theirs: nn.LayerNorm) -> None:
    ours.weight.copy_(theirs.weight)
    ours.bias.copy_(theirs.bias)


@torch.no_grad()
def copy_feed_forward(ours, theirs) -> None:
    ours.ff.linear1.load_state_dict(theirs.linear1.state_dict())
    ours.ff.linear2.load_state_dict(theirs.linear2.state_dict())


def copy_encoder_layer(ours: EncoderLayer, theirs: nn.TransformerEncoderLayer) -> None:
    copy_mha(ours.self_attn, theirs.self_attn)
    copy_feed_forward(ours, theirs)
    copy_norm(ours.norm1, theirs.norm1)
    copy_norm(ours.norm2, theirs.norm2)


def copy_decoder_layer(ours: DecoderLayer, theirs: nn.TransformerDecoderLayer) -> None:
    copy_mha(ours.self_attn, theirs.self_attn)
    copy_mha(ours.cross_attn, theirs.multihead_attn)
    copy_feed_forward(ours, theirs)
    copy_norm(ours.norm1, theirs.norm1)
    copy_norm(ours.norm2, theirs.norm2)
    copy_norm(ours.norm3, theirs.norm3)
