"""Training, above the pipeline: what makes the artifacts in ``adapters/`` (``affect-llm train …``).

- :mod:`.context`: the conversation-context model (LoRA MiniLM + Broad Mamba) on a dataset's train split.
- :mod:`.fusion`: the probability fusion's temperatures and weights, fitted on dev analyses.
- :mod:`.reasoner`: the reasoner's LoRA adapter and soft-prompt projector, on examples the pipeline builds.
- :mod:`.silver`: the silver explanations the reasoner is trained to write.
- :mod:`.synthetic`: media-shaped examples from the textualizers on sampled AU and prosody patterns.

Only this package builds examples with the :class:`~affect_llm.pipeline.Pipeline`; the stage packages below it
(``cues``, ``context``, ``llm``, ``metrics``) are inference and definitions.
"""
