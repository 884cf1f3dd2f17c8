"""Adapters that let outside evaluation harnesses drive a TempFlex model (docs/eval.md).

``tempflex.integrations.lmms_eval``: the lmms-eval model ``tempflex`` (entry point group ``lmms_eval.models``) and
the export of benchmark questions as a local lmms-eval task. ``tempflex.integrations.vlmevalkit``: ``TempFlexVLM``
for VLMEvalKit. Each imports its harness only when used.
"""
