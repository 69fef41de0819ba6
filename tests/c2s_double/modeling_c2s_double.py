"""The Compare2Score test double: mPLUG-Owl2's interface on a few thousand parameters.

Each image becomes `image_tokens` embeddings (patch conv + pooling) spliced in place of the -200
markers, images consumed in order across the batch as mPLUG-Owl2 does; a GRU makes the output
depend on token order, so swapping the two images changes the answer, and a running mean of
the inputs, weighted by position, keeps the images' influence on the last position strong.

Fault injection for the worker tests: when the environment names a file in C2S_DOUBLE_FAULT_FILE,
its content is read at every forward: "exit" (the process dies), "hang" (never returns), "raise"
(a Python error); anything else, or no file, runs normally.
"""
import os
import time

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_c2s_double import C2SDoubleConfig

IMAGE_TOKEN_INDEX = -200


class C2SDoubleForCausalLM(PreTrainedModel):
    config_class = C2SDoubleConfig

    def __init__(self, config):
        super().__init__(config)
        h = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, h)
        self.patch = nn.Conv2d(3, h, config.patch_size, config.patch_size)
        self.pool = nn.AdaptiveAvgPool1d(config.image_tokens)
        self.rnn = nn.GRU(h, h, batch_first=True)
        self.position = nn.Embedding(512, h)
        self.lm_head = nn.Linear(h, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):
        """Keep PyTorch's default initialisation: wider than 0.02, so the levels differ."""

    def _image_tokens(self, images):
        x = self.patch(images).flatten(2)  # (n, h, patches)
        return self.pool(x).transpose(1, 2)  # (n, image_tokens, h)

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, inputs_embeds=None,
                labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                images=None, return_dict=None):
        print("c2s double: forward")  # remote code prints too; the worker must keep stdout clean
        fault_file = os.environ.get("C2S_DOUBLE_FAULT_FILE")
        fault = open(fault_file).read().strip() if fault_file and os.path.exists(fault_file) else ""
        if fault == "exit":
            os._exit(7)
        if fault == "hang":
            time.sleep(3600)
        if fault == "raise":
            raise RuntimeError("injected fault in the test double")
        feats = self._image_tokens(images.to(self.patch.weight.dtype)) if images is not None else None
        rows, k = [], 0
        for ids in input_ids:
            parts, start = [], 0
            for pos in (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist():
                parts += [self.embed_tokens(ids[start:pos]), feats[k]]
                k += 1
                start = pos + 1
            parts.append(self.embed_tokens(ids[start:]))
            rows.append(torch.cat(parts))
        x = torch.stack(rows)
        hidden, _ = self.rnn(x)  # order-sensitive, but forgets early tokens ...
        steps = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)[None, :, None]
        x = x * self.position.weight[: x.shape[1]]  # ... so also carry a position-weighted running mean
        hidden = hidden + 4 * x.cumsum(1) / steps
        return CausalLMOutputWithPast(logits=self.lm_head(hidden))
