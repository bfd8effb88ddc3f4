"""Distil one causal LM into another with a KD Atlas loss and the Hugging Face Trainer, on CPU.

The README's "Use with Hugging Face / TRL" script, verbatim between the markers (a test keeps
the two equal and runs it): ``python -m reference_impls.integrations.example`` (as a module: run
as a file, this directory's ``transformers.py`` would shadow the library). Needs the ``hf`` extra.
"""

# --8<-- [start:example]
import torch
from transformers import TrainingArguments

from reference_impls.integrations.tiny import tiny_causal_lm, tiny_dataset, tiny_teacher
from reference_impls.integrations.transformers import DistillationTrainer

torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared CPU
teacher = tiny_teacher("qwen2")  # or AutoModelForCausalLM.from_pretrained(...), any size
student = tiny_causal_lm("qwen2")  # a smaller causal LM sharing the teacher's tokenizer
data = tiny_dataset(256, seed=0)  # rows: {"input_ids": [...], "prompt_length": n}
args = TrainingArguments(
    "kd-out", max_steps=30, per_device_train_batch_size=8, learning_rate=3e-3,
    logging_steps=10, save_strategy="no", report_to=[], use_cpu=True,
)  # fmt: skip
trainer = DistillationTrainer(
    student, teacher, args, train_dataset=data,
    loss="generalized_jsd", loss_params={"beta": 0.5}, temperature=1.0,
    alpha=0.1, fused=True, on_policy_ratio=0.0,
)  # fmt: skip
trainer.train()  # logs loss, kd and ce
# --8<-- [end:example]
