"""Run in a child process with the serving environment: print the reference implementations'
results (transformers' resize and vLLM's placeholder counts) for the sizes given on stdin."""

import json
import sys
from types import SimpleNamespace

from transformers.models.gemma4_unified.configuration_gemma4_unified import Gemma4UnifiedVisionConfig
from transformers.models.gemma4_unified.image_processing_gemma4_unified import get_aspect_ratio_preserving_size
from vllm.model_executor.models.gemma4_mm import Gemma4ProcessingInfo
from vllm.model_executor.models.gemma4_unified import Gemma4UnifiedProcessingInfo

req = json.load(sys.stdin)
vision = Gemma4UnifiedVisionConfig()
info = SimpleNamespace(get_hf_config=lambda: SimpleNamespace(vision_config=vision))
images = []
for w, h, budget in req["images"]:
    th, tw = get_aspect_ratio_preserving_size(height=h, width=w, patch_size=16, max_patches=budget * 9, pooling_kernel_size=3)
    n = Gemma4UnifiedProcessingInfo._compute_num_soft_tokens(info, w, h, max_soft_tokens=budget)
    images.append({"resized": [tw, th], "vllm_soft_tokens": n})
audio = [Gemma4ProcessingInfo._compute_audio_num_tokens(n, 16000, 750) for n in req["audio"]]
json.dump({"images": images, "audio": audio}, sys.stdout)
