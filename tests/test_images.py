"""dap_model.images: the one image-file reader."""

import cv2
import numpy as np
import pytest

from dap_model.errors import InputError
from dap_model.images import decode_rgb, read_rgb, try_read_rgb


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def test_decodes_colour_grey_alpha_and_16_bit_to_rgb():
    bgr = np.zeros((4, 8, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    assert decode_rgb(_png(bgr), "x")[0, 0].tolist() == [0, 0, 200]
    grey = np.full((4, 8), 77, np.uint8)
    assert decode_rgb(_png(grey), "x").shape == (4, 8, 3) and decode_rgb(_png(grey), "x")[0, 0].tolist() == [77] * 3
    bgra = np.dstack([bgr, np.full((4, 8), 255, np.uint8)])
    assert decode_rgb(_png(bgra), "x")[0, 0].tolist() == [0, 0, 200]
    deep = np.full((4, 8, 3), 257 * 90, np.uint16)
    out = decode_rgb(_png(deep), "x")
    assert out.dtype == np.uint8 and out[0, 0].tolist() == [90, 90, 90]


def test_bad_files_name_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "missing.jpg"
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    for path, why in ((missing, "no such file"), (empty, "not a decodable image (empty file)"),
                      (corrupt, "not a decodable image")):
        with pytest.raises(InputError) as err:
            read_rgb(path)
        assert str(err.value) == f"{path}: {why}"
        assert try_read_rgb(path) == (None, why)


def test_reads_a_file(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (6, 12, 3), dtype=np.uint8)
    path = tmp_path / "pano.png"
    path.write_bytes(_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))
    img, why = try_read_rgb(path)
    assert why == "" and np.array_equal(img, rgb) and np.array_equal(read_rgb(str(path)), rgb)
