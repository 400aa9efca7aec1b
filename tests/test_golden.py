"""The model matches the official MobileSAM / segment-anything outputs on stand-in checkpoints."""
import numpy as np

from conftest import golden_index, load_golden_prompt, load_sample, GOLDEN
from mobilesam import SamPredictor

EMBED_ATOL = 1e-3
LOGIT_ATOL = 1e-2
IOU_ATOL = 1e-3
MIN_MASK_IOU = 0.995


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def golden_cases(model_type):
    index = golden_index(model_type)
    return [(key, entry) for key, entry in index["images"].items()]


def prompt_kwargs(prompt: dict, previous: dict) -> dict:
    kwargs = {"multimask_output": prompt["multimask_output"]}
    if "point_coords" in prompt:
        kwargs["point_coords"] = np.array(prompt["point_coords"], dtype=np.float32)
        kwargs["point_labels"] = np.array(prompt["point_labels"])
    if "box" in prompt:
        kwargs["box"] = np.array(prompt["box"], dtype=np.float32)
    if "mask_from" in prompt:
        logits, scores = previous[prompt["mask_from"]]
        kwargs["mask_input"] = logits[np.argmax(scores)][None]
    return kwargs


def check_model_against_goldens(model, model_type):
    predictor = SamPredictor(model)
    for key, entry in golden_cases(model_type):
        image = load_sample(entry["image"])
        assert image.shape[:2] == (entry["height"], entry["width"])
        predictor.set_image(image)
        golden_embedding = np.load(GOLDEN / model_type / f"{key}_embedding.npy")
        embedding = predictor.get_image_embedding().cpu().numpy()
        assert embedding.shape == golden_embedding.shape == (1, 256, 64, 64)
        np.testing.assert_allclose(embedding, golden_embedding, atol=EMBED_ATOL, rtol=0,
                                   err_msg=f"{model_type} {key} embedding")
        previous = {}
        for prompt in entry["prompts"]:
            golden = load_golden_prompt(model_type, key, prompt["name"])
            masks, scores, logits = predictor.predict(**prompt_kwargs(prompt, previous))
            previous[prompt["name"]] = (logits, scores)
            label = f"{model_type} {key} {prompt['name']}"
            assert masks.shape == golden["masks"].shape, label
            assert masks.dtype == bool
            np.testing.assert_allclose(logits, golden["low_res_masks"], atol=LOGIT_ATOL, rtol=0, err_msg=label)
            np.testing.assert_allclose(scores, golden["iou_predictions"], atol=IOU_ATOL, rtol=0, err_msg=label)
            for i, (ours, theirs) in enumerate(zip(masks, golden["masks"])):
                assert mask_iou(ours, theirs) >= MIN_MASK_IOU, f"{label} mask {i}"


def test_vit_t_matches_official_goldens(vit_t_model):
    check_model_against_goldens(vit_t_model, "vit_t")


def test_vit_b_matches_official_goldens(vit_b_model):
    check_model_against_goldens(vit_b_model, "vit_b")
