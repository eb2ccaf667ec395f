"""Dask orchestration: builds graphs of calls to the pure pipeline functions; knows no pixels.

``cluster`` starts or connects to a cluster, ``worker_state`` keeps one loaded model per
worker process, ``tasks`` are the functions that run on workers, ``run`` drives a batch.
"""
