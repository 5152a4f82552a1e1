"""Evaluation: perplexity (DESIGN §5), zero-shot tasks, text sources.

Modules: ``perplexity`` (``perplexity.perplexity``, ``perplexity.windows``),
``zeroshot`` (``evaluate``, ``loglikelihoods``, ``TASKS``), ``tasks`` (file
readers), ``text`` (``PythonDocs``, ``WikiText2Raw``, ``TextFile``) and
``scoring`` (the shared jitted scorer).
"""

from sharq_jax.eval import perplexity, scoring, tasks, text, zeroshot

__all__ = ["perplexity", "scoring", "tasks", "text", "zeroshot"]
