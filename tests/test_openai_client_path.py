"""The OpenAI client path's shortcuts keep what they replace: a body built from pieces and pre-encoded images is
the JSON the fields make, images in the places the wording gives them; a send to a server that stops reading
ends with the request's deadline, however large the body."""
from __future__ import annotations

import dataclasses
import json
import socket
import threading

import pytest

pytest.importorskip("openai")

from adapters.chat import conversation, image_url_part  # noqa: E402
from adapters.http_deadline import deadline, deadline_client, httpx  # noqa: E402
from adapters.openai_api import EncodedImages, RequestBody  # noqa: E402


def test_a_body_from_pieces_is_the_json_of_its_fields_with_the_images_where_the_wording_puts_them(tmp_path):
    from adapters.chat import checked_prompt

    _, rendered = checked_prompt("official", 2, "test", prefill=True)
    swapped = dataclasses.replace(rendered, segments=[1, "then", 0, 'say "which" \\ \x00'])  # image 2 first

    def fields(urls):
        return {"model": "m", "messages": conversation(swapped, [image_url_part(u) for u in urls]),
                "logprob_token_ids": [1, 2]}

    store = EncodedImages()
    (tmp_path / "a.png").write_bytes(b"a")  # the store keys data URLs by file content
    (tmp_path / "b.png").write_bytes(b"b")
    first, second = (store.get(str(tmp_path / name), lambda url=url: url)
                     for name, url in (("a.png", "data:image/png;base64,QUJD"), ("b.png", "data:image/png;base64,REVG")))
    body = RequestBody(fields, 2).fill([first, second])
    assert json.loads(body) == fields(["data:image/png;base64,QUJD", "data:image/png;base64,REVG"])
    parts = json.loads(body)["messages"][0]["content"]
    assert parts[0]["image_url"]["url"].endswith("REVG") and parts[2]["image_url"]["url"].endswith("QUJD")


def test_a_wording_that_spells_an_image_slot_is_refused_not_sent_wrong():
    with pytest.raises(ValueError, match="each of its 1 image"):
        RequestBody(lambda urls: {"messages": [urls[0], "\x00c2s-image-0\x00"]}, 1)


def test_a_send_to_a_server_that_stops_reading_ends_with_the_deadline():
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    client, _ = deadline_client(1)
    body = b"x" * (64 * 1024 * 1024)  # far more than the socket buffers on both sides hold
    try:
        with deadline(1.0), pytest.raises(httpx.WriteTimeout):
            # each operation alone may take 600 s: only the deadline can end the send
            client.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", content=body, timeout=600)
    finally:
        client.close()
        listener.close()
        for conn, _ in accepted:
            conn.close()


def test_an_image_whose_fast_png_is_over_the_cap_but_whose_default_png_fits_stays_lossless_png():
    import base64
    import io

    import numpy as np
    from PIL import Image

    from adapters.openai_api import ImageEncoding, image_data_url

    ramp = np.add.outer(np.arange(300), np.arange(400)) % 256  # smooth: deflate levels differ a lot
    img = Image.fromarray(np.stack([ramp, ramp // 2, 255 - ramp], axis=-1).astype(np.uint8))
    sizes = {}
    for level in (1, 6):
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=level)
        sizes[level] = buf.tell()
    assert sizes[6] < sizes[1]
    url = image_data_url(img, ImageEncoding(max_bytes=max(1024, (sizes[1] + sizes[6]) // 2)))
    head, data = url.split(",", 1)
    assert head == "data:image/png;base64"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))), np.asarray(img))
