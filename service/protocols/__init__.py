"""The protocols room: one Flask blueprint per protocol or resource (and a gRPC servicer), each a thin adapter.

A protocol module decodes a request (``service.codecs``), calls the app's ``DataPlane`` (or the
registry, for metadata and management) and encodes the answer; it holds no inference logic.

- ``v1``: TensorFlow Serving / KServe V1 ``:predict``, ``:predict_image``, ``:explain``, metadata;
- ``v2``: the Open Inference Protocol (KServe V2 / Triton): health, metadata, ``infer``;
- ``v2_model``: what V2 says about the server and its models, Flask-free, for ``v2`` and gRPC;
- ``grpc_v2``: the same protocol over gRPC (a servicer, not a blueprint; see its package);
- ``repository``: Triton's model repository extension (index, load, unload: for the whole server);
- ``triton``: Triton's model configuration and statistics extensions;
- ``models``: the served models, their versions and aliases (promote, roll back);
- ``evaluation``: a version's confusion matrix on labelled data;
- ``health``: ``/healthz`` and ``/readyz``;
- ``openapi`` (with ``openapi_docs``): ``/openapi.json``, built from the app's own routes.

The job endpoints are the room ``service.jobs``; the console's pages ``service.console``.
"""
