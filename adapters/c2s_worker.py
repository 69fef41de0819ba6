"""Compare2Score worker: runs the mPLUG-Owl2 remote-code model in its own environment.

Why a separate process: the released model needs transformers 4.36-4.37, which cannot live
beside the harness's transformers 5. This file is a stand-alone program (stdlib + torch +
transformers, with Pillow for images) started by `adapters.compare2score` under the worker
environment's python; it imports nothing from the harness and runs under transformers 4.36-4.37
and 5.x alike.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout, in order. Every
reply has "ok"; a failed request answers {"ok": false, "error": "Type: message", "traceback": ...}
and the worker keeps serving. Requests:

  {"op": "load", "model": PATH_OR_ID, "prompt": STR, "levels": [5 words],
   "device": "auto"|"cpu"|"cuda[:k]", "dtype": "auto"|"float16"|"bfloat16"|"float32"}
      -> {"ok": true, "info": {"model_class", "device", "dtype", "level_ids", "level_strings",
          "level_split", "image_size", "image_mean", "image_std", "background", "torch",
          "transformers", "python"}}
  {"op": "compare", "images": [{"width": W, "height": H, "rgb": BASE64 of W*H*3 bytes}, ...],
   "pairs": [[i, j], ...], "batch_size": N}
      -> {"ok": true, "logprobs": [[5 floats], ...], "level_mass": [float, ...], "logsumexp": [float, ...]}
         images[i] is shown first and images[j] second; log-probs are over the five level
         tokens at the next position (log-softmax over the five, no temperature, in float64 from the
         model's own logits); level_mass is the probability the model puts on the five tokens in its
         full vocabulary; logsumexp is what was subtracted from their raw logits, so log-probs +
         logsumexp rounds back to the model's (float16) level logits bit for bit.
  {"op": "ping"} -> {"ok": true}
  {"op": "shutdown"} -> {"ok": true}, then the worker exits. End of stdin also ends it.

Inside: the official prompt as given by the parent (rendered from prompts/official.j2), each image
padded to a square with the CLIP mean colour (the official expand2square) before the model's own
CLIP processor, and the official level-token rule: the first sub-token of each word tokenised on
its own (`tokenizer(word).input_ids[1]`, BOS dropped). The fd 1 is re-pointed to stderr so that
prints from remote code cannot corrupt the protocol, and stdin to /dev/null so that no library
prompt can read it.
"""
from __future__ import annotations

import base64
import json
import os
import platform
import sys
import traceback

IMAGE_TOKEN = "<|image|>"
IMAGE_TOKEN_INDEX = -200  # mPLUG-Owl2's marker for "splice an image here"


def pad_to_square(img, background):
    """Centre `img` on a square canvas of its longer side filled with `background` (RGB ints)."""
    from PIL import Image

    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), tuple(background))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def mean_colour(image_processor):
    """The processor's normalisation mean as 0-255 ints (what the official code pads with)."""
    return [int(x * 255) for x in image_processor.image_mean]


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of `prompt` with IMAGE_TOKEN_INDEX at each image marker.

    Each text chunk is tokenised on its own (as mPLUG-Owl2 does), keeping only the first BOS.
    """
    ids: list[int] = []
    for k, chunk in enumerate(prompt.split(IMAGE_TOKEN)):
        if k:
            ids.append(IMAGE_TOKEN_INDEX)
        if not chunk:
            continue
        part = tokenizer(chunk).input_ids
        if part and part[0] == tokenizer.bos_token_id and (k or ids):
            part = part[1:]
        ids.extend(part)
    return ids


def level_token_ids(tokenizer, words):
    """The official rule: first sub-token after BOS of each word tokenised alone; also whether the
    word split into several tokens (recorded, not refused: this is the released model's rule)."""
    ids, split = [], []
    for w in words:
        toks = tokenizer(w).input_ids
        if toks and toks[0] == tokenizer.bos_token_id:
            toks = toks[1:]
        if not toks:
            raise ValueError(f"level word {w!r} tokenises to nothing")
        ids.append(toks[0])
        split.append(len(toks) > 1)
    if len(set(ids)) != len(ids):
        raise ValueError(f"level words share token ids: {dict(zip(words, ids))}")
    return ids, split


def decode_image(spec):
    from PIL import Image

    w, h = int(spec["width"]), int(spec["height"])
    data = base64.b64decode(spec["rgb"])
    if len(data) != w * h * 3:
        raise ValueError(f"image payload has {len(data)} bytes, expected {w}x{h}x3 = {w * h * 3}")
    return Image.frombytes("RGB", (w, h), data)


class Worker:
    def __init__(self):
        self.model = None

    def load(self, req):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor

        device = req.get("device") or "auto"
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = req.get("dtype") or "auto"
        if dtype == "auto":
            dtype = "float16" if device.startswith("cuda") else "float32"
        if dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"unknown dtype {dtype!r}; choose float16, bfloat16 or float32")
        path = req["model"]
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        self.processor = CLIPImageProcessor.from_pretrained(path)
        major = int(transformers.__version__.split(".")[0])
        dtype_kw = {"dtype" if major >= 5 else "torch_dtype": getattr(torch, dtype)}
        self.model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, **dtype_kw)
        self.model = self.model.to(device).eval()
        self.device, self.dtype = device, dtype
        self.input_ids = torch.tensor([prompt_ids(self.tokenizer, req["prompt"])], device=device)
        n_images = int((self.input_ids == IMAGE_TOKEN_INDEX).sum())
        if n_images != 2:
            raise ValueError(f"the prompt must hold two {IMAGE_TOKEN} markers, found {n_images}")
        self.level_ids, split = level_token_ids(self.tokenizer, req["levels"])
        self.background = mean_colour(self.processor)
        size = getattr(self.processor, "crop_size", None) or self.processor.size
        return {"info": {
            "model_class": type(self.model).__name__, "device": device, "dtype": dtype,
            "level_ids": self.level_ids, "level_strings": self.tokenizer.convert_ids_to_tokens(self.level_ids),
            "level_split": split, "image_size": dict(size), "image_mean": list(self.processor.image_mean),
            "image_std": list(self.processor.image_std), "background": self.background,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}}

    def pixels(self, images):
        """Preprocess each distinct image once: pad to square, then the CLIP processor."""
        squares = [pad_to_square(decode_image(s), self.background) for s in images]
        return self.processor(images=squares, return_tensors="pt")["pixel_values"]

    def compare(self, req):
        import torch

        if self.model is None:
            raise RuntimeError("no model loaded: send a 'load' request first")
        pairs = [(int(i), int(j)) for i, j in req["pairs"]]
        batch = max(1, int(req.get("batch_size", 8)))
        pixels = self.pixels(req["images"]).to(self.device, getattr(torch, self.dtype))
        logprobs, mass, lse = [], [], []
        for start in range(0, len(pairs), batch):
            chunk = pairs[start:start + batch]
            order = torch.tensor([k for pair in chunk for k in pair], device=self.device)
            with torch.inference_mode():
                out = self.model(self.input_ids.repeat(len(chunk), 1), images=pixels[order])
            logits = out["logits"][:, -1, :]
            raw = logits[:, self.level_ids].double()  # float16 logits are exact in float64
            shift = torch.logsumexp(raw, dim=-1)
            logprobs += (raw - shift[:, None]).tolist()
            mass += (shift - torch.logsumexp(logits.float(), dim=-1).double()).exp().tolist()
            lse += shift.tolist()
        return {"logprobs": logprobs, "level_mass": mass, "logsumexp": lse}


def serve(inp, out) -> None:
    worker = Worker()
    handlers = {"load": worker.load, "compare": worker.compare, "ping": lambda req: {}}
    for line in inp:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "shutdown":
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return
            if op not in handlers:
                raise ValueError(f"unknown op {op!r}; known: {', '.join([*handlers, 'shutdown'])}")
            reply = {"ok": True, **handlers[op](req)}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # no harness modules here
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdout, sys.stdin = sys.stderr, open(os.devnull)
    serve(proto_in, proto_out)


if __name__ == "__main__":
    main()
