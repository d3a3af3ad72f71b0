"""The local CPU judge's vLLM command line: the weights' type follows the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from cat_reward import local_judge
from cat_reward.settings import Settings

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n"
SAPPHIRE = "flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd aes sha2 bf16 i8mm sve\n"


@pytest.mark.parametrize(
    ("cpuinfo", "dtype"),
    [(AVX2_ONLY, "float32"), (SAPPHIRE, "bfloat16"), (GRAVITON3, "bfloat16"), ("", "float32"),
     ("flags: avx512f avx512bw\n", "float32")],  # fmt: skip
)
def test_dtype_follows_bfloat16_arithmetic(cpuinfo, dtype):
    assert local_judge.cpu_dtype(cpuinfo) == dtype


def test_command_carries_the_dtype_and_whole_prompt_scheduling():
    paths = local_judge.JudgePaths(Path("/nowhere"))
    auto = local_judge.server_command(paths, "127.0.0.1", 8101)
    assert auto[auto.index("--dtype") + 1] == local_judge.cpu_dtype()
    forced = local_judge.server_command(paths, "127.0.0.1", 8101, dtype="bfloat16")
    assert forced[forced.index("--dtype") + 1] == "bfloat16"
    assert "--no-enable-chunked-prefill" in forced
    assert int(forced[forced.index("--max-num-batched-tokens") + 1]) >= 4 * 2048


def test_dtype_setting(monkeypatch):
    monkeypatch.setenv("CAT_JUDGE_DTYPE", "float32")
    assert Settings().judge_dtype == "float32"
    monkeypatch.setenv("CAT_JUDGE_DTYPE", "fp8")
    with pytest.raises(ValueError, match="judge_dtype"):
        Settings()
