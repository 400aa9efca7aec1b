"""Accelerated backends: the same numbers as the official computation, computed faster.

- `encoder`: the image encoder in onnxruntime (or PyTorch bfloat16/float16), `ImageEncoder`;
- `fast_decoder`: the prompt encoder + mask decoder rearranged for per-image caching, and its
  onnxruntime session, `FastDecoderSession`;
- `mask_generator`: `FastSamAutomaticMaskGenerator`, segment everything with both.
"""
