"""The codecs room: request bodies in, numpy arrays out, and answers back, with errors that say where.

- ``json_pixels`` (the fast path for plain pixel rows), ``instances`` (V1 ``instances``: rows,
  28x28 grids, ``{"b64"}`` images and multipart uploads), ``images`` and ``image_decode`` (PNG or
  JPEG to MNIST-style 28x28 pixels, within a decoding budget), ``v2_codec`` (V2 tensors, JSON and
  the binary extension);
- ``json_decode`` and ``jsonio``: JSON parsing with positions in its errors, and orjson answers;
- ``schemas``: the pydantic request and response models, which also make ``/openapi.json``.

Everything here but ``jsonio`` is Flask-free (tests/api/test_dataplane.py checks it): the codecs
raise ``ServiceError`` and friends, which ``service.errors`` turns into ``{"error": ...}``.
"""
