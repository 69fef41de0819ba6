"""A tiny stand-in for the Compare2Score (mPLUG-Owl2) remote-code model, for the worker tests.

It has mPLUG-Owl2's call signature (`forward(input_ids, ..., images=...)`, images spliced in
where input_ids hold -200), is saved with `auto_map` so it loads only with
`trust_remote_code=True`, and works with transformers 4.36-4.37 and 5.x. `build.py` builds it.
"""
