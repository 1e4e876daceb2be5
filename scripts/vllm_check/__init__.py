"""scripts/check_vllm.py in parts: cases.py (what the project renders for vLLM), checks.py (what vLLM says of it)."""
