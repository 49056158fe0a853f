"""Networks of the text-to-video cascade. Exports load lazily so `import modeling` stays cheap."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "inflate": "modeling.inflation",
    "InflationOptions": "modeling.inflation",
    "VideoUNet": "modeling.video_unet",
    "VideoUNetOutput": "modeling.video_unet",
    "FpsEmbedding": "modeling.conditioning",
    "ImageEmbeddingProjector": "modeling.conditioning",
    "apply_freeze_policy": "modeling.freeze",
    "temporal_parameters": "modeling.freeze",
    "spatial_parameters": "modeling.freeze",
    "add_mask_channels": "modeling.masked_frames",
    "masked_conditioning": "modeling.masked_frames",
    "interpolation_mask": "modeling.masked_frames",
    "extrapolation_mask": "modeling.masked_frames",
    "prediction_mask": "modeling.masked_frames",
    "drop_context": "modeling.masked_frames",
    "noise_augment": "modeling.superres",
    "superres_conditioning": "modeling.superres",
    "TiledVideoUNet": "modeling.superres",
    "TemporalVAE": "modeling.temporal_vae",
    "decode_video": "modeling.temporal_vae",
    "PatchDiscriminator3D": "modeling.discriminator",
    "decoder_finetune_loss": "modeling.discriminator",
    "ImagePrior": "modeling.prior",
    "Cascade": "modeling.cascade",
    "CascadeConfig": "modeling.cascade",
    "VideoOutput": "modeling.cascade",
    "ddim_sample": "modeling.samplers",
    "vidrd_sample": "modeling.samplers",
    "VidRDConfig": "modeling.samplers",
    "autoregressive_sample": "modeling.samplers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'modeling' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
