"""Meta-training of the learned ZO optimizer: ``python -m zominimize.train --config FILE``.

``tasks`` generates the training problems (differentiable, in torch), ``unroll`` runs
a learned design on them exactly as inference does (the same step functions of
``zominimize.learned.designs``) while keeping the graph for the meta-gradient, and
``trainer`` holds the two-stage loop, validation, checkpoints and the output in the
format ``zominimize.learned.weights`` loads.
"""
