"""`prefixproof experiment`: the paper's experiments (Section 5) on small transformers that prefixproof trains.

Modules, one idea each:
- `tasks`     the sequence tasks, the seeded split and the fixed test sets (numpy only);
- `config`    frozen, validated experiment configurations (JSON files);
- `registry`  E1-E5, the 1-layer ablation of E3 and prefix + LoRA, at CPU and paper sizes;
- `model`     the minGPT-like transformer with prefix, soft prompt and LoRA hooks (torch);
- `methods`   the adaptation methods and their parameter counts (torch);
- `train`     training and exact-match evaluation (torch);
- `measure`   the prefix identities and the attention-order measure on trained models (torch);
- `figure`    Figure 1 (matplotlib);
- `run`       an experiment as independent jobs; `report` the comparison table.

Only `tasks`, `config`, `registry` and `report` import without torch.
"""
