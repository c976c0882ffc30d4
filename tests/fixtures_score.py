"""Tiny random UNets and a UNet call counter for the score-distillation tests (SwiftBrush, SNOOPI, Phased DMD)."""

import torch


def tiny_unet(seed: int = 0, cross_attention_dim: int = 32):
    """A ~1M-parameter SD-like UNet (latents 4x8x8) with random weights; random output bias so outputs are not ~0."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=8)
    with torch.no_grad():  # diffusers zero-initialises nothing here, but make sure the output layer is non-trivial
        unet.conv_out.weight.mul_(10)
    return unet.eval()


def embeddings(batch: int = 2, seed: int = 1, tokens: int = 77, dim: int = 32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, dim, generator=g), torch.randn(batch, tokens, dim, generator=g)


class CallCounter:
    """Counts forward calls of a module (and the images they carried)."""

    def __init__(self, module):
        self.calls = 0
        self.images = 0
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls += 1
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        self.images += sample.shape[0]

    def close(self):
        self._handle.remove()
