"""The model loop: retraining, evaluation, the model registry and its dashboard, checkpoint downloads.

It sits above ``annotator`` (it reads people's masks through ``annotator.selectors`` and its models)
and above the compute runtime ``engine`` (whose tables it fills); nothing below imports it.
"""
