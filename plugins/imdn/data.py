"""Training patches for SR: random aligned LR/HR crops from a folder of HR images (``train_IMDN.py`` data pipeline).

Each HR image is cropped to a multiple of the scale and downscaled once with MATLAB-style bicubic
(:func:`zoo_plugins.imdn.degradation.imresize`, rounded to uint8 between passes as for DIV2K's LR images); patches are
then cut at the same place in both (``data/common.py get_patch``) and augmented by random flips and a transpose.
Sampling uses only a ``numpy.random.Generator`` seeded by the caller, so a batch stream depends only on its seed.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from zoo.errors import ConfigError
from zoo.images import list_images, load_image, to_uint8
from zoo.sr_metrics import modcrop
from zoo_plugins.imdn.degradation import imresize


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """``uint8 [H, W, 3]`` (H, W multiples of ``scale``) → the MATLAB-bicubic ``uint8 [H/s, W/s, 3]``."""
    tensor = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))).double()
    lr = imresize(tensor, 1.0 / scale, round_between=True)
    return lr.to(torch.uint8).permute(1, 2, 0).numpy()


class PatchSource:
    """Aligned LR/HR patches from the images in ``hr_dir``.

    Args:
        hr_dir: folder of HR images.
        scale: upscaling factor.
        patch_size: HR patch side (multiple of ``scale``).
        augment: random horizontal flip, vertical flip and transpose (each with probability 1/2).
        cache_images: decoded image pairs kept in memory (least recently used dropped).
    """

    def __init__(self, hr_dir: str | Path, scale: int, patch_size: int, augment: bool = True,
                 cache_images: int = 32) -> None:
        if not str(hr_dir):
            raise ConfigError("data.hr_dir is empty; set it to a folder of HR training images, e.g. "
                              "zoo train imdn data.hr_dir=/data/DIV2K_train_HR")
        if not Path(hr_dir).is_dir():
            raise ConfigError(f"data.hr_dir {hr_dir} is not a folder")
        if patch_size % scale:
            raise ConfigError(f"data.patch_size {patch_size} is not a multiple of model.scale {scale}")
        self.files = list_images(hr_dir)
        if not self.files:
            raise ConfigError(f"data.hr_dir {hr_dir} holds no images (png, jpg, bmp, tif, webp)")
        self.scale = scale
        self.patch_size = patch_size
        self.augment = augment
        self.cache_images = max(1, cache_images)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lr, hr)`` uint8 arrays of image ``index`` (decoded and downscaled once, then cached)."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        hr = modcrop(to_uint8(load_image(self.files[index])), self.scale)
        if min(hr.shape[:2]) < self.patch_size:
            raise ConfigError(f"{self.files[index].name} is {hr.shape[1]}x{hr.shape[0]}, smaller than "
                              f"data.patch_size {self.patch_size}; remove it or lower the patch size")
        pair = (bicubic_downscale(hr, self.scale), hr)
        self._cache[index] = pair
        if len(self._cache) > self.cache_images:
            self._cache.popitem(last=False)
        return pair

    def patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One random aligned ``(lr, hr)`` patch pair as float32 ``[3, p, p]`` / ``[3, P, P]`` in [0, 1]."""
        lr, hr = self.pair(int(rng.integers(len(self.files))))
        lr_patch = self.patch_size // self.scale
        # 1. Same location in both images (LR top-left ix, iy; HR at s·ix, s·iy).
        iy = int(rng.integers(lr.shape[0] - lr_patch + 1))
        ix = int(rng.integers(lr.shape[1] - lr_patch + 1))
        lr_crop = lr[iy:iy + lr_patch, ix:ix + lr_patch]
        hr_crop = hr[iy * self.scale:(iy + lr_patch) * self.scale, ix * self.scale:(ix + lr_patch) * self.scale]
        # 2. Augmentation: horizontal flip, vertical flip, transpose, each with probability 1/2.
        if self.augment:
            flip_h, flip_v, transpose = rng.random(3) < 0.5
            if flip_h:
                lr_crop, hr_crop = lr_crop[:, ::-1], hr_crop[:, ::-1]
            if flip_v:
                lr_crop, hr_crop = lr_crop[::-1], hr_crop[::-1]
            if transpose:
                lr_crop, hr_crop = lr_crop.transpose(1, 0, 2), hr_crop.transpose(1, 0, 2)
        return _chw_float(lr_crop), _chw_float(hr_crop)

    def batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An endless stream of ``(lr [B, 3, p, p], hr [B, 3, P, P])`` batches that depends only on ``seed``."""
        rng = np.random.default_rng(seed)
        while True:
            patches = [self.patch(rng) for _ in range(batch_size)]
            yield (torch.from_numpy(np.stack([p[0] for p in patches])),
                   torch.from_numpy(np.stack([p[1] for p in patches])))


def _chw_float(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
