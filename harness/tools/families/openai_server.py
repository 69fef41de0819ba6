"""Any OpenAI-compatible server (a vLLM server, or a hosted API); no tiny build."""
from __future__ import annotations

from harness.tools.families import Family

FAMILY = Family("OpenAI-compatible server", "gpt-4o, or any model a vLLM server serves", ("openai:MODEL",),
                (("openai", "-o server=vllm -o base_url=http://127.0.0.1:8000/v1 -o api_key_env=null"),
                 ("openai", "-o server=generic -o api_key_env=OPENAI_API_KEY")),
                "server=vllm reads the exact level log-probs; server=generic the top-20 first-token ones (use the "
                "paper profile there: levels outside the top 20 count as 0)", model_type=None)
