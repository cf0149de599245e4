"""Chat code actions: prompts, streaming answers and the edits they turn into.

``edits`` is pure: it turns a model's answer into the smallest safe edit of a selection, or a refusal.
"""
