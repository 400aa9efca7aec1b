"""The app's API (gradio_client): `segment`, `segment_objects`, `segment_everything` and `compare`. Each call sends
an image file; results are files in the service's output folder and JSON strings."""
import json
import os
import time
from typing import Optional, Tuple

import gradio as gr
import numpy as np
from PIL import Image

from . import compare as cmp
from .engine import EncodedImage, Engine
from .objects import objects_json, predict_objects
from .prompts import parse_objects, parse_prompts
from .service import Service, encoder_params, file_path, user_error


class ApiEndpoints:
    """The API's endpoints, on one `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def compare_api(self, image_file, prompts_json: str, progress=gr.Progress()) -> Tuple[str, str, str]:
        """api_name="compare": (image file, prompts JSON) -> (MobileSAM's best mask PNG, SAM's best mask PNG,
        summary JSON), both computed here with the PyTorch predictors; SAM is the server's default
        comparison model (--sam-model-type)."""
        if self.service.sam_models is None:
            raise user_error("Compare mode is not available on this server.")
        image = self.service.load_image(file_path(image_file))
        encoded = self.service.encode(image, exact=True)
        try:
            prompt = parse_prompts(prompts_json, encoded.original_size)
        except ValueError as exc:
            raise user_error(f"Invalid prompts: {exc}") from exc
        loaded, sam_encoded = self.service.sam_encode(self.service.sam_models.default_type, image, encoded.image_id, progress)
        results = []
        for engine, enc in ((self.service.engine, encoded), (loaded.engine, sam_encoded)):
            mask, scores, index = engine.best_mask(enc, **prompt)
            path = self.service.output_path(f"mask-{engine.model_type}-", ".png")
            save_mask_png(mask, path)
            results.append((path, mask, scores, index, engine, enc))
        (path_a, mask_a, *a), (path_b, mask_b, *b) = results
        summary = cmp.compare_summary(encoded.width, encoded.height, prompt, self._model_numbers(mask_a, *a),
                                      self._model_numbers(mask_b, *b), cmp.mask_iou(mask_a, mask_b))
        return str(path_a), str(path_b), json.dumps(summary)

    @staticmethod
    def _model_numbers(mask, scores, index, engine: Engine, encoded: EncodedImage) -> dict:
        return {"model": engine.model_type, "label": cmp.label(engine.model_type), "score": float(scores[index]),
                "scores": [float(s) for s in scores], "index": int(index), "area": int(mask.sum()),
                "encode_ms": round(encoded.encode_ms, 1), "encoder_params": encoder_params(engine)}

    def segment_api(self, image_file, prompts_json: str) -> Tuple[str, str]:
        """api_name="segment": (image file, prompts JSON) -> (best mask PNG path, scores JSON)."""
        encoded = self.service.encode_file(image_file)
        mask, scores, index = self.service.best_mask(encoded, prompts_json)
        path = self.service.output_path(f"mask-{self.service.engine.model_type}-", ".png")
        save_mask_png(mask, path)
        return str(path), scores_json(scores, index)

    def segment_objects_api(self, image_file, objects_json_text: str) -> Tuple[str, str]:
        """api_name="segment_objects": (image file, `{"objects": [{"points", "box"}, ...], "multimask"}`)
        -> (SA-1B-style JSON file with one annotation per object in request order, summary JSON)."""
        path_in = file_path(image_file)
        image = self.service.load_image(path_in)
        encoded = self.service.encode(image, exact=True)
        try:
            objects, multimask = parse_objects(objects_json_text, encoded.original_size)
        except ValueError as exc:
            raise user_error(f"Invalid objects: {exc}") from exc
        start = time.perf_counter()
        results = predict_objects(self.service.engine.predictor_for(encoded), objects, multimask)
        decode_ms = (time.perf_counter() - start) * 1000
        doc = objects_json(results, objects, encoded.original_size, os.path.basename(path_in))
        path = self.service.output_path("objects-", ".json")
        with open(path, "w") as f:
            json.dump(doc, f)
        summary = {"objects": len(results), "multimask": multimask, "width": encoded.width,
                   "height": encoded.height, "areas": [a["area"] for a in doc["annotations"]],
                   "scores": [a["predicted_iou"] for a in doc["annotations"]], "decode_ms": round(decode_ms, 1)}
        return str(path), json.dumps(summary)

    def segment_everything_api(self, image_file, points_per_side: float = 16,
                               progress=gr.Progress()) -> str:
        """api_name="segment_everything": image file -> SA-1B annotations JSON file."""
        image = self.service.load_image(file_path(image_file))
        _, path, _ = self.service.segment_everything(image, points_per_side, progress)
        return str(path)


def save_mask_png(mask: np.ndarray, path) -> None:
    """Write an H×W bool mask as an 8-bit grayscale PNG, 255 inside, 0 outside."""
    # compress_level 1: a third of the default's time for a photo-sized mask (a few KB more)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path, format="PNG", compress_level=1)


def scores_json(scores: np.ndarray, index: int, extra: Optional[dict] = None) -> str:
    out = {"score": float(scores[index]), "scores": [float(s) for s in scores]}
    out.update(extra or {})
    return json.dumps(out)
