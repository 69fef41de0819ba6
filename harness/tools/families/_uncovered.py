"""Every image-text-to-text family of the installed transformers that has no module here, with why.

The coverage table (`c2s models --coverage`) lists each family of transformers' image-text-to-text mapping
as proven (a module in this package with a tiny build and the proofs in tests/), composite (a single-image
family judged side by side), or not covered with the reason below. tests/test_families.py checks that every
family of the mapping is in exactly one of these places.
"""

#: transformers 5.24.0: model_type -> why it has no tiny build and proofs here.
NOT_COVERED: dict[str, str] = {
    "apertus1p5": "omni model: Apertus1p5Config requires a WavTokenizer audio encoder (audio_config must be "
                "'wavtokenizer_encoder', configuration_apertus1p5.py:237) next to its vision tower; no tiny build of "
                "both towers made here",
    "aria": "no tiny build: AriaProcessor's own default max_image_size=980 overrides its image processor's, so "
            "every image reaches the vision tower at 980x980, beyond a tiny model's budget; not tried on a real one",
    "blip": "single-image captioner whose prompt is rewritten at generation: BlipForConditionalGeneration.generate "
            "overwrites the first token with the text decoder's [DEC] bos and drops the trailing [SEP] "
            "(modeling_blip.py:917), while forward takes the processor's ids as given, so a next-token read over the "
            "processor's prompt is not what the model was trained on; a tiny composite build passed the plumbing "
            "proofs but was not kept",
    "chameleon": "early-fusion VQ model: images become ChameleonVQVAE codebook tokens mapped through the vocabulary's "
               "IMGIMG* entries, so a tiny build needs a tiny VQ-VAE and that token map; not made here",
    "cohere_compass": "two images per prompt, but a tiny build on Qwen3-VL's builder failed: CohereCompassTextConfig "
                    "(strict) rejects the mrope rope_parameters and the processor expects its own upper-case "
                    "<|IMAGE_PAD|>/<|VISION_START|> tokens (processing_cohere_compass.py:39-53); not finished",
    "cosmos3_edge": "two images per prompt, but its processor and model disagree: Cosmos3EdgeProcessor does not return "
                    "mm_token_type_ids by default (Glm46VProcessor sets return_mm_token_type_ids) while "
                    "Cosmos3EdgeModel raises without them (modeling_cosmos3_edge.py:1024); a tiny build (SigLIP tower, "
                    "patch 16) reached that error",
    "cosmos3_omni": "transformers 5.24 maps no processor to cosmos3_omni (processing_auto has none; the model folder "
                  "has no processing module), so there is no documented way to put images into a prompt",
    "deepseek_ocr2": "document OCR model: DeepseekOcr2ForConditionalGeneration takes one global view plus local crops "
                   "per page (pixel_values_local, num_local_patches); its prompts are OCR instructions, not chat; no "
                   "tiny build made here",
    "diffusion_gemma": "block-diffusion decoder: DiffusionGemmaForBlockDiffusion returns logits for a masked canvas "
                     "(decoder_input_ids, self-conditioning), not next-token log-probs after a prompt, so the "
                     "level-word probabilities the method reads do not exist",
    "dots3_note": "omni model: Dots3NoteConfig has an audio tower (audio_config, adapter_out_dim must equal the text "
                "hidden size) and a DeepSeek-style MoE text model; no tiny build made here",
    "emu3": "early-fusion VQ model: images become Emu3VQVAE codebook tokens (modeling_emu3.py:931) laid out as a grid "
          "with row tokens, so a tiny build needs a tiny VQ-VAE and its vocabulary map; not made here",
    "ernie4_5_vl_moe": "two images per prompt, but Ernie4_5_VLMoe needs moe_mm_token_type_ids and a text model with "
                     "separate text/vision expert groups; no tiny build made here",
    "evolla": "protein-text model: EvollaForProteinText2Text takes protein sequences (EvollaProcessor(proteins=..., "
            "messages_list=...)), no images at all",
    "florence2": "encoder-decoder (BART) with task prompts: Florence2ForConditionalGeneration puts the prompt in the "
               "encoder and needs decoder_input_ids, while the adapter reads next-token log-probs after a "
               "decoder-only chat prompt with the assistant prefill",
    "fuyu": "single image per prompt, and FuyuProcessor appends its own beginning-of-answer marker (\\x04) after "
            "whatever text it is given (processing_fuyu.py, prepare_inputs_layout), so the assistant prefill the "
            "method needs would sit before the answer marker, not after it",
    "gemma3n": "omni model: Gemma3nConfig carries a USM audio tower and the text model's per-layer inputs, AltUp and "
             "LAuReL blocks; no tiny build of them made here",
    "gemma4_unified": "omni model: Gemma4UnifiedConfig carries an audio tower (Gemma4UnifiedAudioConfig) and a "
                    "restricted image budget (max_soft_tokens must be one of a fixed set); no tiny build made here",
    "glm5_next": "two images per prompt, but a tiny build on GLM-4.1V's builder failed in forward: 'get_seq_length can "
               "only be called on Attention layers' (cache_utils.py:1773) once the tiny text model's layers are all "
               "linear-attention/DSA; not finished",
    "got_ocr2": "OCR model: GotOcr2Processor builds its own OCR prompt around one page (or multi-page crops, optional "
              "box/color) with no chat template for a question about two images",
    "granite4_vision": "two images per prompt (LLaVA-NeXT anyres processor), but Granite4Vision adds its own "
                     "multi-layer feature projector; no tiny build made here",
    "granite_docling": "document conversion model: GraniteDoclingForConditionalGeneration tiles each page "
                     "(tile_fine_mask, pixel_attention_mask) with a MoE router, trained to emit DocTags; no tiny "
                     "build made here",
    "hunyuan_vl": "two images per prompt, but HunYuanVL pools the image-token grid with its own rope indices "
                "(modeling_hunyuan_vl.py:871) and HunYuan-dense text; no tiny build made here",
    "hy_v4_vl": "two images per prompt, but HYV4VL pairs HunYuanVL's vision tower with HY-V4's MoE text model; no tiny "
              "build made here",
    "hyperclovax_vision_v2": "two images per prompt (Qwen-style grids), but its text model and processor tokens are "
                           "its own; no tiny build made here",
    "idefics": "Idefics v1 (Flamingo-style perceiver + gated cross-attention): IdeficsProcessor takes the legacy "
             "interleaved prompt lists (images as list items, image_attention_mask), not a chat template; no tiny "
             "build made here",
    "inkling2": "two images per prompt, but Inkling2's vision encoder outputs (mm_encoder_outputs) and axial rope are "
              "its own; no tiny build made here",
    "inkling2_loop": "Inkling2 with a looped text model (loop_num_passes, loop_layer_index_start); no tiny build made "
                   "here",
    "inkling_mm_model": "omni model: InklingForConditionalGeneration takes audio_input_ids next to images, and the "
                      "installed transformers has no inkling_mm_model folder to build from (the mapping names "
                      "InklingProcessor only)",
    "instructblipvideo": "video model: InstructBlipVideoProcessor takes one clip of 4 frames per prompt "
                       "(processing_instructblipvideo.py:104) with no per-image placeholder, so two images cannot be "
                       "ordered in a prompt; InstructBLIP itself is covered as composite",
    "kosmos-2": "single image per prompt, and Kosmos2Processor writes the <s> before its <image> span only with "
                "add_special_tokens (processing_kosmos2.py:231), which the hf adapter turns off (the chat template "
                "carries the specials), so a real checkpoint would see its prompt without <s>; a tiny composite build "
                "passed the plumbing proofs but was not kept",
    "kosmos-2.5": "document OCR/markdown model: Kosmos2_5ForConditionalGeneration takes one page as flattened patches "
                "(flattened_patches, width, height) and a task tag (<ocr>/<md>), no chat prompt",
    "llama4": "transformers 5.24's Llama4ForConditionalGeneration.forward raises AttributeError on every call "
              "(it reads image_outputs from its language model's MoeCausalLMOutputWithPast, modeling_llama4.py:1318); "
              "a tiny build (Llama4Processor, <|header_start|> template) ran up to that line",
    "minimax_m3_vl": "two images per prompt, but MiniMaxM3Sparse's text model is a sparse-attention MoE with an "
                   "indexer cache; no tiny build made here",
    "mistral4": "transformers maps it to Mistral4ForCausalLM, a text-only model (no vision tower, no image "
                "inputs): there are no images to compare",
    "muse_glimmer": "two images per prompt (Kimi-K2.5-style vision tower, Glm4v image processor), but its text model "
                  "mixes AFMoE attention with Gemma blocks; no tiny build made here",
    "muse_spark": "omni model: MuseSparkConfig has an audio tower (input_values, audio_config.out_hidden_size must "
                "equal the text hidden size); no tiny build made here",
    "nemotron_h_omni": "omni model: NemotronH_Omni has an audio tower and a Mamba-hybrid text model; its processor "
                     "allows videos only with a single prompt; no tiny build made here",
    "pi0": "robot action policy: PI0ForConditionalGeneration returns flow-matching action velocities as its 'logits' "
         "(modeling_pi0.py:318), no token log-probs",
    "pix2struct": "encoder-decoder over one screenshot: Pix2StructProcessor renders the text prompt as a header onto "
                "the single image (flattened_patches) and the answer comes from the decoder, so there is no chat "
                "prompt with an assistant prefill",
    "pp_chart2table": "chart-to-table OCR model (GOT-OCR2 classes): PPChart2TableProcessor fixes the task prompt "
                    "around one chart image",
    "pp_formulanet": "formula recognition encoder-decoder: PPFormulaNetProcessor takes images only (no text), so no "
                   "comparison prompt can be given",
    "qwen2_5_omni_thinker": "omni model: transformers maps no processor to qwen2_5_omni_thinker (the omni processor "
                          "serves the full Qwen2.5-Omni) and the thinker needs an audio tower config too; no tiny "
                          "build made here",
    "qwen3_omni_moe_thinker": "omni model: transformers maps no processor to qwen3_omni_moe_thinker and the thinker "
                            "needs an audio tower config too; no tiny build made here",
    "shieldgemma2": "image-safety classifier: ShieldGemma2Processor wraps each image in its own fixed policy prompts "
                  "and allows at most one image per sample (processing_shieldgemma2.py:179), so neither a two-image "
                  "nor a composite comparison prompt reaches the model",
    "step3p7": "two images per prompt, but Step3p7 takes one global view plus local crops per image "
             "(pixel_values_local, num_local_patches); no tiny build made here",
    "t5gemma2": "encoder-decoder: T5Gemma2ForConditionalGeneration puts the prompt and images in the encoder and needs "
              "decoder_input_ids, while the adapter reads next-token log-probs after a decoder-only chat prompt",
    "udop": "document encoder-decoder: UdopProcessor needs OCR words with bounding boxes (boxes, word_labels) for one "
          "page, no chat prompt",
    "unlimited_ocr": "document OCR model: UnlimitedOcrForConditionalGeneration takes one global view plus local crops "
                   "per page (pixel_values_local, patches_grid) with OCR prompts; no tiny build made here",
    "vision-encoder-decoder": "generic image encoder + text decoder: VisionEncoderDecoderModel's encoder takes pixels "
                            "only and no processor is mapped, so a text prompt can only go to the decoder; "
                            "checkpoints are captioners/OCR (TrOCR, Donut)",
}
