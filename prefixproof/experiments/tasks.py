"""The sequence tasks of the paper's experiments, their seeded train/test split and fixed test sets.

A sequence is ``[PAD] * P + prompt + answer``: P pad positions (where a prefix or soft prompt goes; a
pretrained model sees PAD there), the prompt (an optional task slot, then 10 digits drawn from 0-7, or a
word for memorisation) and the 10-token answer. With `task_token`, the pretraining mix puts its task's token
in the slot; a single task always leaves PAD there, so an adapted prefix (not the input) selects the task. The model reads ``seq[:-1]`` and is scored on the answer
positions of ``seq[1:]``.

Split: an input belongs to the test split when ``mix64(key) % 4 == 0``, with ``key`` the digits read in base 8
and ``mix64`` the splitmix64 finaliser: the same for every run, machine and Python process (the companion code
used Python's salted ``hash()``, which changes every run). Training batches draw only train-split inputs; the
test set of a task is 3,200 distinct test-split inputs drawn once from a fixed seed, so every run of every
method is scored on the same inputs.

Memorisation (E5) is different by nature: a synthetic word list and two synthetic "languages" (random
word -> word dictionaries), all generated from a fixed seed. A dictionary cannot be generalised to unseen
words, so its score is the recall of the memorised pairs, reported as such (never called test accuracy).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LENGTH = 10  # digits per input and tokens per answer
DIGITS = 8  # inputs use 0..7
PAD = 10
TASK_TOKEN0 = 11
VOCAB = 15  # digits 0..9 (add-2 reaches 9), PAD, 4 task tokens
MIX = ("ascending", "descending", "add1", "add2")
SINGLE = MIX + ("ascending_add1", "double_hist")
MEMORISE = ("translate_a", "translate_b")
TASKS = SINGLE + ("mix",) + MEMORISE
TEST_SEED = 20231029  # the one seed of every fixed test set
WORDS_SEED = 1729  # the one seed of the word list and the two languages
WORD_LENGTH = 5


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 (wrapping arithmetic): a fixed, well-mixed hash of the key."""
    z = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def is_test(inputs: np.ndarray) -> np.ndarray:
    """(B, 10) digits -> (B,) bool: in the test split (a quarter of all inputs)."""
    key = (inputs.astype(np.uint64) * (np.uint64(DIGITS) ** np.arange(LENGTH - 1, -1, -1, dtype=np.uint64))).sum(-1)
    return mix64(key) % np.uint64(4) == 0


def solve(task: str, inputs: np.ndarray) -> np.ndarray:
    """The answer of `task` for every row of `inputs` (B, 10)."""
    if task == "ascending":
        return np.sort(inputs, axis=1)
    if task == "descending":
        return -np.sort(-inputs, axis=1)
    if task == "add1":
        return inputs + 1
    if task == "add2":
        return inputs + 2
    if task == "ascending_add1":
        return np.sort(inputs, axis=1) + 1
    if task == "double_hist":  # each element replaced by how often it occurs
        return (inputs[:, :, None] == inputs[:, None, :]).sum(-1)
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def draw_inputs(rng: np.random.Generator, n: int, split: str) -> np.ndarray:
    """n inputs of the split, as the companion code draws them: half of them with at most 5 distinct digits
    (repeats are what the models find hard), then kept only if in `split`; all-equal inputs are dropped
    (their histogram, 10, is not a digit)."""
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        cand = rng.integers(0, DIGITS, size=(max(2 * n, 64), LENGTH))
        distinct = (np.sort(cand, axis=1)[:, 1:] != np.sort(cand, axis=1)[:, :-1]).sum(1) + 1
        boost = rng.random(len(cand)) < 0.5
        keep = (~boost | (distinct <= LENGTH // 2)) & (is_test(cand) == (split == "test")) & (distinct > 1)
        out.append(cand[keep])
        have += int(keep.sum())
    return np.concatenate(out)[:n]


@dataclass(frozen=True)
class Batch:
    seq: np.ndarray  # (B, P + prompt + answer) int64
    prompt_len: int  # P + prompt length: the answer starts here

    @property
    def answer_len(self) -> int:
        return self.seq.shape[1] - self.prompt_len


def _assemble(prompts: np.ndarray, answers: np.ndarray, prefix_len: int) -> Batch:
    pad = np.full((len(prompts), prefix_len), PAD, dtype=np.int64)
    seq = np.concatenate([pad, prompts.astype(np.int64), answers.astype(np.int64)], axis=1)
    return Batch(seq, prefix_len + prompts.shape[1])


def digit_batch(task: str, inputs: np.ndarray, prefix_len: int, task_token: bool = False,
                mix_tasks: np.ndarray | None = None) -> Batch:
    """Sequences for `inputs`; for the mix, `mix_tasks[i]` (index into MIX) picks row i's task."""
    if task == "mix":
        if mix_tasks is None:
            mix_tasks = np.arange(len(inputs)) % len(MIX)
        answers = np.empty_like(inputs)
        for t, name in enumerate(MIX):
            rows = mix_tasks == t
            answers[rows] = solve(name, inputs[rows])
        tokens = TASK_TOKEN0 + mix_tasks
    else:
        answers = solve(task, inputs)
        tokens = np.full(len(inputs), PAD)  # a single task leaves the task slot empty: the prefix must select
    prompts = np.concatenate([tokens[:, None], inputs], axis=1) if task_token else inputs
    return _assemble(prompts, answers, prefix_len)


def words(n_words: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The word list and its two languages: (n_words, 5) each, distinct words, letters 0..7, fixed seed."""
    rng = np.random.default_rng(WORDS_SEED)
    if n_words > DIGITS ** WORD_LENGTH // 2:
        raise ValueError(f"at most {DIGITS ** WORD_LENGTH // 2} words")
    codes = rng.choice(DIGITS ** WORD_LENGTH, size=n_words, replace=False)
    spell = (codes[:, None] // DIGITS ** np.arange(WORD_LENGTH - 1, -1, -1)) % DIGITS
    lang_a = rng.integers(0, DIGITS, size=(n_words, WORD_LENGTH))
    lang_b = rng.integers(0, DIGITS, size=(n_words, WORD_LENGTH))
    return spell, lang_a, lang_b


def train_batch(task: str, rng: np.random.Generator, size: int, prefix_len: int, task_token: bool = False,
                n_words: int = 0) -> Batch:
    """A training batch: train-split inputs (or memorised words) drawn with `rng`."""
    if task in MEMORISE:
        spell, a, b = words(n_words)
        rows = rng.integers(0, n_words, size=size)
        return _assemble(spell[rows], (a if task == "translate_a" else b)[rows], prefix_len)
    inputs = draw_inputs(rng, size, "train")
    mix = rng.integers(0, len(MIX), size=size) if task == "mix" else None
    return digit_batch(task, inputs, prefix_len, task_token, mix)


def eval_batch(task: str, size: int, prefix_len: int, task_token: bool = False, n_words: int = 0) -> Batch:
    """The fixed evaluation set: `size` distinct test-split inputs from TEST_SEED (the same for every run);
    for memorisation every memorised pair (recall)."""
    if task in MEMORISE:
        spell, a, b = words(n_words)
        return _assemble(spell, a if task == "translate_a" else b, prefix_len)
    rng = np.random.default_rng(TEST_SEED)
    pool = np.unique(draw_inputs(rng, 4 * size, "test"), axis=0)
    if len(pool) < size:
        raise ValueError(f"only {len(pool)} distinct test inputs; ask for fewer")
    inputs = pool[rng.permutation(len(pool))[:size]]
    return digit_batch(task, inputs, prefix_len, task_token)


def eval_set_name(task: str) -> str:
    return "memorised pairs (recall; the training set by design)" if task in MEMORISE else "fixed test split"
