"""Hypothesis profiles: "ci" (the default) keeps the property tests well under a minute on a slow
two-core machine; "thorough" (``pytest --hypothesis-profile=thorough``) hunts longer."""

from hypothesis import settings

settings.register_profile("ci", max_examples=200, stateful_step_count=50, deadline=None, print_blob=True)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=5_000)
settings.load_profile("ci")
