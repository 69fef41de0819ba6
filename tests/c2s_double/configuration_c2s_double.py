"""Config of the Compare2Score test double (remote code, loaded through `auto_map`)."""
try:
    from transformers import PreTrainedConfig as _Base
except ImportError:  # transformers < 5
    from transformers import PretrainedConfig as _Base


class C2SDoubleConfig(_Base):
    model_type = "c2s_double"

    def __init__(self, vocab_size=320, hidden_size=32, patch_size=8, image_tokens=4, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.patch_size = patch_size
        self.image_tokens = image_tokens  # mPLUG-Owl2's visual abstractor gives 65; 4 is enough here
        super().__init__(**kwargs)
