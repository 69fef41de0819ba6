"""Build the Compare2Score test double into a folder: `python build.py OUT_DIR [SEED]`.

Runs under any python with torch + transformers (4.36-4.37 or 5.x), so each environment builds
the double its own tokenizers version can read. Saved: weights, config with `auto_map`, the
remote-code files, a Llama-style tokenizer (BOS prepended, "▁" word prefix) and a CLIP image
processor with CLIP's mean and std.
"""
import sys
from pathlib import Path

LEVELS = ["inferior", "worse", "similar", "better", "superior"]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
PROMPT = ("USER: <|image|> <|image|> Compared with the first image, what is your quality rating for "
          "second image? \nASSISTANT: The quality of the second image is")


def build(out_dir, seed=0):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import CLIPImageProcessor, PreTrainedTokenizerFast

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from c2s_double.configuration_c2s_double import C2SDoubleConfig
    from c2s_double.modeling_c2s_double import C2SDoubleForCausalLM

    out = Path(out_dir)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    corpus = [PROMPT.replace("<|image|>", "")] * 20 + [f"The quality is {w}" for w in LEVELS] * 40
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>")
    C2SDoubleConfig.register_for_auto_class()
    C2SDoubleForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    torch.manual_seed(seed)
    model = C2SDoubleForCausalLM(C2SDoubleConfig(vocab_size=len(fast)))
    model.save_pretrained(out)
    fast.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=CLIP_MEAN, image_std=CLIP_STD).save_pretrained(out)
    return out


if __name__ == "__main__":
    build(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(sys.argv[1])
