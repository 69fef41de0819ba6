"""What a few transformers families need from the hf adapter beyond the common path, as data keyed by
the processor's class name (the adapters cannot see harness/tools/families, which sits above them).

Why a table and not checks in adapters/hf.py: each entry is one family's fact, proven by its tiny build
(tests/test_hf_adapter.py), and adding a family never touches the adapter's code.
"""

#: Processors that open every image with transformers.image_utils.load_image, which takes PIL images or
#: URLs but not tensors: the adapter hands them PIL images even when the image processor is torchvision-backed.
PIL_ONLY_PROCESSORS = frozenset({"Idefics2Processor"})
