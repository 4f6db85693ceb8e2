import io

import numpy as np
import pyarrow as pa
from PIL import Image

from mmbatch.testing.images import bad_image_bytes, encode, synthetic_image

from .helpers import make_op


def test_decode_matches_pil_and_keeps_original_size():
    imgs = [synthetic_image(i, (80, 60)) for i in range(3)]
    data = [encode(im, "PNG") for im in imgs]
    out = make_op("decode_image")(pa.table({"image": data}))
    assert out.column("error").null_count == 3
    from mmbatch.core.columns import column_to_python

    pixels = column_to_python(out.column("pixels"))
    for im, px in zip(imgs, pixels, strict=True):
        assert np.array_equal(px, np.asarray(im.convert("RGB")))
    assert out.column("image_width").to_pylist() == [80] * 3
    assert out.column("image_height").to_pylist() == [60] * 3


def test_resize_shorter_side_and_exact(tmp_path):
    from mmbatch.core.columns import column_to_python

    jpeg = encode(synthetic_image(0, (640, 480)), "JPEG")
    out = make_op("decode_image", resize=224)(pa.table({"image": [jpeg]}))
    assert column_to_python(out.column("pixels"))[0].shape == (224, 299, 3)
    out = make_op("decode_image", resize=(32, 16))(pa.table({"image": [jpeg]}))
    assert column_to_python(out.column("pixels"))[0].shape == (16, 32, 3)
    # a path instead of bytes
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg)
    out = make_op("decode_image", resize=224)(pa.table({"image": [str(path)]}))
    assert column_to_python(out.column("pixels"))[0].shape == (224, 299, 3)


def test_draft_mode_decode_is_close_to_full_decode_then_resize():
    from mmbatch.core.columns import column_to_python

    img = synthetic_image(5, (640, 480))
    jpeg = encode(img, "JPEG", quality=95)
    out = make_op("decode_image", resize=(160, 120))(pa.table({"image": [jpeg]}))
    fast = column_to_python(out.column("pixels"))[0].astype(np.int16)
    ref = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB").resize((160, 120), Image.BICUBIC)).astype(np.int16)
    assert np.abs(fast - ref).mean() < 8


def test_bad_images_become_error_rows_with_reasons():
    bad = bad_image_bytes()
    good = encode(synthetic_image(1, (32, 32)), "JPEG")
    names = list(bad)
    table = pa.table({"id": ["good", *names, "null"], "image": [good, *bad.values(), None]})
    out = make_op("decode_image", max_pixels=50_000_000)(table)
    errors = dict(zip(out.column("id").to_pylist(), out.column("error").to_pylist(), strict=True))
    assert errors["good"] is None
    for name in [*names, "null"]:
        assert errors[name] and errors[name].startswith("decode_image:"), name
    assert out.num_rows == table.num_rows
