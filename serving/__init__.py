"""Serving LiMAML models: TF Serving configuration, client, warmup and a dev server.

Production runs the stock `tensorflow/serving` image on the versioned
directories the pipeline pushes (see `serving/models.config` and the
manifests beside it). `serving.client` talks to it over gRPC or REST;
`serving.dev_server` speaks the same APIs on machines without the TF Serving
binary, for development and tests.
"""
