"""GGUF LoRA adapters for llama-server: a PEFT adapter converted by llama.cpp's own
`convert_lora_to_gguf.py`, against the config of exactly the GGUF model the server serves.

transformers is imported only here and only when a conversion runs (it is the `train` extra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from foundation.settings import Settings
from llm.engine_build import Engine
from llm.local_model import ModelError


class AdapterError(ModelError):
    """A LoRA adapter cannot be converted or is unusable."""


def save_base_config(model: Path, out_dir: Path) -> Path:
    """Write the Hugging Face `config.json` of the GGUF `model` into `out_dir` (what the
    converter needs of the base: its shapes and architecture, no weights) and return `out_dir`.

    The config transformers reads from a GGUF names no architecture and carries a `gguf`
    quantization config; the converter refuses both, so the first is added, the second dropped.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model.parent, gguf_file=model.name)
    except (OSError, ValueError) as e:
        raise AdapterError(f"cannot read the model config of {model}: {e}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    document = config.to_dict()
    document.pop("quantization_config", None)
    if not document.get("architectures"):
        document["architectures"] = [_architecture(document.get("model_type", ""))]
    (out_dir / "config.json").write_text(json.dumps(document, indent=1))
    return out_dir


def _architecture(model_type: str) -> str:
    known = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
    try:
        return known[model_type]
    except KeyError:
        raise AdapterError(f"no known architecture for model type {model_type!r}") from None


def convert_adapter(engine: Engine, adapter_dir: Path, base_dir: Path, out_file: Path) -> Path:
    """Convert the PEFT adapter in `adapter_dir` to a GGUF LoRA at `out_file` (f32)."""
    cmd = [sys.executable, str(engine.lora_converter), "--base", str(base_dir)]
    cmd += ["--outfile", str(out_file), "--outtype", "f32", str(adapter_dir)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(engine.gguf_py), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or not out_file.is_file():
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise AdapterError(f"cannot convert {adapter_dir}: {(lines or ['no output'])[-1]}")
    return out_file


def adapters_dir(settings: Settings) -> Path:
    """Where learned adapters are kept (GGUF files): `<data_dir>/adapters`."""
    return settings.data_dir / "adapters"


def learned_adapters(settings: Settings) -> list[Path]:
    """The adapters the settings list, then those learned in the data dir, each once."""
    listed = list(settings.local_model_loras)
    folder = adapters_dir(settings)
    learned = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
    return listed + [path for path in learned if path not in listed]
