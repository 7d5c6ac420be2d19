"""Demand forecasting for the pipelines: features, models, metrics and gates (pure code).

The step scripts beside this package (``prep.py``, ``train.py`` …) are thin command lines
over these modules; Azure ML uploads this folder as each component's code.
"""
