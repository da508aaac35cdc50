"""liftgs.train — training recipes (pretrain, finetune) and their infrastructure.

``loop.run_training`` is the one loop both recipes drive; ``checkpoint`` writes atomic,
pickle-free checkpoints that resume bit for bit; ``distributed`` wraps torchrun / DDP;
``logging`` shows a progress bar and writes TensorBoard + JSONL logs. Recipes import the
model / render / loss modules lazily so this package imports fast.
"""
