import io

import numpy as np
import pyarrow as pa
import pytest
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


def _decode(data: bytes, **config):
    import pyarrow as pa

    from mmbatch.core.columns import column_to_python

    out = make_op("decode_image", **config)(pa.table({"image": [data]}))
    error = out.column("error").to_pylist()[0]
    if error is not None:
        return None, error, out
    return column_to_python(out.column("pixels"))[0], None, out


def _save(img, fmt: str, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_pixels_are_what_a_viewer_shows():
    """Each mode against a hand-made expected array."""
    from PIL import Image

    # 16-bit greyscale: 0, 100*257, 65535 -> 0, 100, 255 (not clipped to white)
    grey16 = np.array([[0, 100 * 257, 65535]], dtype=np.uint16)
    px, err, _ = _decode(_save(Image.fromarray(grey16), "PNG"))
    assert err is None and px.tolist() == [[[0, 0, 0], [100, 100, 100], [255, 255, 255]]]
    # 32-bit integer TIFF within 0..65535 scales the same way; outside it is an error row
    px, err, _ = _decode(_save(Image.fromarray(grey16.astype(np.int32), "I"), "TIFF"))
    assert err is None and px[0, :, 0].tolist() == [0, 100, 255]
    _, err, _ = _decode(_save(Image.fromarray(np.array([[-5, 70000]], dtype=np.int32), "I"), "TIFF"))
    assert err is not None and "no faithful 8-bit picture" in err

    # RGBA composited on white: transparent red -> white, half-transparent blue -> light blue
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 128], [10, 20, 30, 255]]], dtype=np.uint8)
    px, err, _ = _decode(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    a = 128 / 255
    expected = [[255, 255, 255], [round(255 * (1 - a)), round(255 * (1 - a)), 255], [10, 20, 30]]
    assert err is None and np.abs(px[0].astype(int) - np.array(expected)).max() <= 1
    px, _, _ = _decode(_save(Image.fromarray(rgba, "RGBA"), "PNG"), background=[0, 0, 0])
    assert px[0, 0].tolist() == [0, 0, 0]

    # EXIF orientation 6 (the camera was turned): shown turned 90 degrees clockwise
    quad = np.zeros((2, 3, 3), dtype=np.uint8)
    quad[0, 0] = [255, 0, 0]
    img = Image.fromarray(quad)
    exif = img.getexif()
    exif[0x0112] = 6
    data = _save(img, "PNG", exif=exif)
    px, err, out = _decode(data)
    assert err is None and px.shape == (3, 2, 3) and np.array_equal(px, np.rot90(quad, -1))
    assert out.column("image_width").to_pylist() == [2] and out.column("image_height").to_pylist() == [3]
    px, _, _ = _decode(data, exif_transpose=False)
    assert np.array_equal(px, quad)
    # orientations that keep the axes but flip or turn the picture: 2 (mirrored), 3 (180 degrees)
    for orientation, expected in ((2, np.fliplr(quad)), (3, np.rot90(quad, 2)), (1, quad)):
        exif[0x0112] = orientation
        px, err, out = _decode(_save(img, "PNG", exif=exif))
        assert err is None and np.array_equal(px, expected), orientation
        assert out.column("image_width").to_pylist() == [3] and out.column("image_height").to_pylist() == [2]

    # an animated GIF: the first frame, and the frame count says it was one of several
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (0, 128, 255)]
    gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    px, err, out = _decode(gif)
    assert err is None and px.max() == 0 and out.column("image_frames").to_pylist() == [3]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_device_decode_turns_a_jpeg_upright_as_decode_image_does(orientation):
    """decode_on_device (torchvision's decode_jpeg, nvJPEG on CUDA) reads the EXIF orientation
    from the header and turns the decoded tensor on the device: the same pixels as PIL's
    exif_transpose in decode_image, for each of the eight orientations."""
    from mmbatch.operators.image import read_image
    from mmbatch.operators.pixels import decode_batch

    blocks = np.zeros((24, 40, 3), np.uint8)  # four flat blocks: no turn or mirror maps it onto itself
    blocks[:12, :16], blocks[:12, 16:], blocks[12:, :16], blocks[12:, 16:] = (250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)
    data = encode(Image.fromarray(blocks), "JPEG", quality=95, orientation=orientation)
    (image,), (error,), by_pil = decode_batch([data], "cpu", 10**8)
    expected = read_image(data)[0]
    assert error is None and by_pil == 0 and np.array_equal(image.permute(1, 2, 0).numpy(), expected)
    as_stored = read_image(data, exif_transpose=False)[0]
    assert np.array_equal(expected, as_stored) == (orientation == 1)  # the turn shows in the pixels


def test_path_columns_open_only_files_under_the_allowed_roots(tmp_path):
    """A string image column may name files under the input's own folder (the default the
    job gives the step) or URLs; /etc/passwd is an error row, and nothing of it is read."""
    from mmbatch.pipelines.spec import job_from_dict

    inside = tmp_path / "imgs" / "a.png"
    inside.parent.mkdir()
    inside.write_bytes(encode(synthetic_image(0, (8, 8)), "PNG"))
    job = job_from_dict({"name": "p", "input": {"path": str(tmp_path / "imgs" / "list.parquet")},
                         "steps": [{"op": "decode_image"}], "output": {"path": str(tmp_path / "out")}})
    assert job.steps[0].config.allowed_roots == [str(tmp_path / "imgs")]
    op = make_op("decode_image", allowed_roots=[str(tmp_path / "imgs")])
    escape = str(tmp_path / "imgs" / ".." / ".." / ".." / "etc" / "passwd")
    out = op(pa.table({"image": [str(inside), "/etc/passwd", escape]}))
    errors = out.column("error").to_pylist()
    assert errors[0] is None
    assert all("outside the allowed roots" in e and "root:" not in e for e in errors[1:])


def test_an_undecodable_file_is_named_by_a_short_hex_signature_not_its_content():
    out = make_op("decode_image")(pa.table({"image": [bad_image_bytes()["text"]]}))
    (error,) = out.column("error").to_pylist()
    assert "starting 5468697320697320" in error and "This is" not in error
