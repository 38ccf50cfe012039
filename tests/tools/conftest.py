from tests.data.fixtures import (  # noqa: F401 - fixtures
    geobench_root,
    geotiff_pair,
    mados_root,
    sen2venus_fake,
    tiny_encoder,
    tiny_encoder_b,
)
